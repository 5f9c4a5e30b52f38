"""End to end: a tiny real bench against the reference gateway writes bench.json and bench.html
with every promised field, and a healthy gateway at a trivial load has no correctness violation.

Numbers are not asserted (a benchmark records them; a slow machine must not fail this test).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from realtime_conformance.harness.providers.broker import RABBITMQ_SERVER

pytestmark = pytest.mark.skipif(not RABBITMQ_SERVER.exists(), reason="needs rabbitmq-server for a private broker")

REQUIRED = ("target", "clients", "events_per_s", "p50_ms", "p99_ms", "max_ms", "lost", "duplicated", "cross_tenant",
            "out_of_order")


def test_tiny_bench_against_the_reference_gateway(tmp_path: Path):
    out = tmp_path / "bench"
    command = [sys.executable, "-c", "from realtime_conformance.harness.cli import main; raise SystemExit(main())",
               "bench", "--broker", "process", "--bench-steps", "8/2@10,12/3@20", "--bench-step-s", "1",
               "--bench-drain-s", "5", "--bench-report-dir", str(out), "-q"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "12/3@20" in done.stdout and "highest step within budget" in done.stdout
    result = json.loads((out / "bench.json").read_text())
    assert [s["label"] for s in result["steps"]] == ["8/2@10", "12/3@20"]
    for step in result["steps"]:
        assert all(key in step for key in REQUIRED)
        assert step["target"] == "reference" and step["connect"]["failed"] == 0
        assert {k: step[k] for k in ("lost", "duplicated", "cross_tenant", "out_of_order")} == dict.fromkeys(
            ("lost", "duplicated", "cross_tenant", "out_of_order"), 0)
        assert step["deliveries"] >= step["clients"]  # every client got events
        assert step["gateway"]["cpu_pct"] is not None and step["harness"]["memory_per_client_kb"] is not None
    assert (out / "bench.html").read_text().count("<svg") == 3
