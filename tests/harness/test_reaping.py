"""Interrupting a run (Ctrl-C, or a CI runner's SIGTERM) leaves no broker, epmd or gateway behind.

The run is a real ``pytest -m realtime`` subprocess against the reference gateway,
interrupted while a fault test has a dedicated gateway up. A unique environment
variable marks everything it starts, so leftovers are found however deep they are.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from realtime_conformance.harness.providers.processes import processes_with_env

ROOT = Path(__file__).resolve().parents[2]
MARK = "RTC_REAP_TEST"


def _gateways(value: str) -> list[tuple[int, str]]:
    return [(pid, cmd) for pid, cmd in processes_with_env(MARK, value) if "-m realtime_conformance.gateway" in cmd]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_reaps_every_process_and_still_reports(tmp_path, sig):
    value = uuid.uuid4().hex
    env = {**os.environ, MARK: value}
    env.pop("PYTEST_ADDOPTS", None)
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "suites", "-m", "realtime", "-p", "no:cacheprovider", "-q",
         "--requirements", "RECON-5", "--report-dir", str(tmp_path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while len(_gateways(value)) < 2 and time.monotonic() < deadline:  # main + the storm's own
            assert run.poll() is None, f"the run ended before it could be interrupted:\n{run.stdout.read()}"
            time.sleep(0.2)  # polling /proc for another process's children: no event to wait on
        assert len(_gateways(value)) >= 2, "the fault test's dedicated gateway never started"
        assert any("beam.smp" in cmd for _, cmd in processes_with_env(MARK, value)), "no private broker was running"
        run.send_signal(sig)
        output, _ = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    deadline = time.monotonic() + 10
    while processes_with_env(MARK, value) and time.monotonic() < deadline:
        time.sleep(0.2)  # the last children may take a moment to be reaped by init
    assert processes_with_env(MARK, value) == [], f"left behind after {sig.name}:\n{output[-3000:]}"
    assert run.returncode != 0
    report = tmp_path / "compliance.json"
    assert report.exists(), f"no report after {sig.name}:\n{output[-3000:]}"
    assert json.loads(report.read_text())["verdict"] == "FAIL"  # RECON-5 never finished: UNKNOWN
