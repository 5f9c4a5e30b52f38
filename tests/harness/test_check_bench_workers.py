"""CI's check of a distributed bench.json says ok only for a step on N workers, with M clients,
no violation and every per-worker figure (and measured clocks when asked)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "check_bench_workers.py"
spec = importlib.util.spec_from_file_location("check_bench_workers", SCRIPT)
check = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(check)  # type: ignore[union-attr]

WORKER = {"worker": 0, "clients": 100, "deliveries": 10, "cpu_pct": 1.0, "rss_mb": 60.0, "loop_lag_p99_ms": 2.0,
          "clock": None}


def _result(**step):
    base = {"label": "200/20@200", "clients": 200, "workers": [WORKER, {**WORKER, "worker": 1}],
            **dict.fromkeys(check.WRONG, 0)}
    return {"schema": "realtime-conformance/bench/2", "steps": [{**base, **step}]}


def test_ok_and_each_way_to_fail():
    assert check.problems(_result(), 2, 200, False) == []
    assert "violations {'lost': 3}" in check.problems(_result(lost=3), 2, 200, False)[0]
    assert check.problems(_result(), 2, 201, False) == ["no step ran on 2 workers with at least 201 clients"]
    assert "worker 0: cpu_pct" in check.problems(_result(workers=[{**WORKER, "cpu_pct": None}, WORKER]), 2, 1,
                                                 False)[0]
    assert "clock was not measured" in check.problems(_result(), 2, 1, True)[0]
    measured = [{**WORKER, "clock": {"measured": True}}, {**WORKER, "worker": 1, "clock": {"measured": True}}]
    assert check.problems(_result(workers=measured), 2, 1, True) == []
    assert "not realtime-conformance/bench/2" in check.problems({"schema": "x"}, 2, 1, False)[0]
