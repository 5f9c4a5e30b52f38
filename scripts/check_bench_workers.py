"""CI's check of a distributed bench run: the bench.json it wrote has a step run by N workers with
at least M clients, no correctness violation, and per-worker figures (and, with --measured, that
the clocks were measured). Numbers are not judged: the bench records them, it is not a gate.

    python scripts/check_bench_workers.py reports/bench-workers/bench.json --workers 2 --clients 200
    python scripts/check_bench_workers.py reports/bench-clock/bench.json --workers 2 --measured
"""

from __future__ import annotations

import argparse
import json
import sys

WRONG = ("lost", "duplicated", "cross_tenant", "out_of_order", "altered", "unrecognised")
PER_WORKER = ("clients", "deliveries", "cpu_pct", "rss_mb", "loop_lag_p99_ms")


def problems(result: dict, workers: int, clients: int, measured: bool) -> list[str]:
    """What is missing from ``result``; empty when it shows what CI needs."""
    if result.get("schema") != "realtime-conformance/bench/2":
        return [f"schema is {result.get('schema')!r}, not realtime-conformance/bench/2"]
    out = []
    for step in result["steps"]:
        if len(step["workers"]) != workers or step["clients"] < clients:
            continue
        wrong = {k: step[k] for k in WRONG if step[k]}
        missing = [f"worker {w.get('worker')}: {k}" for w in step["workers"] for k in PER_WORKER if w.get(k) is None]
        if measured and not all((w.get("clock") or {}).get("measured") for w in step["workers"]):
            missing.append("a worker's clock was not measured")
        if not wrong and not missing:
            return []
        out.append(f"step {step['label']}: violations {wrong}, missing {missing}")
    return out or [f"no step ran on {workers} workers with at least {clients} clients"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--measured", action="store_true", help="every worker's clock must have been measured")
    args = parser.parse_args(argv)
    with open(args.bench_json, encoding="utf-8") as f:
        found = problems(json.load(f), args.workers, args.clients, args.measured)
    print(args.bench_json + ": " + ("; ".join(found) if found else "ok"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
