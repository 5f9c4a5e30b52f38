"""Numbers of one step: latency percentiles, correctness counts from the history checker, ratios.

Pure functions, so the figures the report shows are tested without a gateway. Percentiles are
nearest-rank (as the compliance report's), so a p99 is a latency some delivery really had.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from realtime_conformance.harness.judging.checks import CheckResult

PERCENTILES = (50, 95, 99)
# Correctness under load, each expected 0; the names are the bench.json fields.
CORRECTNESS = ("lost", "duplicated", "cross_tenant", "out_of_order", "altered", "unrecognised")


def nearest_rank(ordered: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of an ascending, non-empty sequence."""
    if not ordered:
        raise ValueError("no values: a percentile of nothing is undefined")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency(values_ms: Iterable[float]) -> dict[str, Any]:
    """count, p50/p95/p99 and max in ms (None when nothing was measured: never read as fast)."""
    ordered = sorted(values_ms)
    out: dict[str, Any] = {"count": len(ordered)}
    for pct in PERCENTILES:
        out[f"p{pct}_ms"] = round(nearest_rank(ordered, pct), 3) if ordered else None
    out["max_ms"] = round(ordered[-1], 3) if ordered else None
    return out


def latency_by_type(result: CheckResult) -> dict[str, dict[str, Any]]:
    """Per event type, and ``all`` over every timed delivery."""
    out = {kind: latency(values) for kind, values in sorted(result.latencies_ms.items())}
    out["all"] = latency(v for values in result.latencies_ms.values() for v in values)
    return out


def correctness(result: CheckResult) -> dict[str, int]:
    """Violations under load, counted in deliveries (not in clients) from the checker's findings.

    lost: expected deliveries that never came; duplicated: copies past the first; cross_tenant:
    deliveries of another tenant's event; out_of_order: deliveries after an event published later;
    altered / unrecognised: payloads not equal to / matching nothing that was published.
    """
    counts = dict.fromkeys(CORRECTNESS, 0)
    for f in result.findings:
        if f.kind == "missing":
            counts["lost"] += int(f.example.get("missing_count", 1))
        elif f.kind == "siblings":
            counts["lost"] += int(f.example.get("short_count", 1))
        elif f.kind == "duplicate":
            counts["duplicated"] += int(f.example.get("times", 2)) - 1
        elif f.kind == "foreign":
            counts["cross_tenant"] += 1
        elif f.kind == "order":
            counts["out_of_order"] += int(f.example.get("inversions", 1))
        elif f.kind in ("altered", "renamed"):
            counts["altered"] += 1
        elif f.kind == "unrecognised":
            counts["unrecognised"] += 1
    return counts


def meets_budget(step: Mapping[str, Any], budget_ms: float) -> bool:
    """A step meets the budget when its p99 was measured, is within it, and nothing was incorrect;
    latencies that workers' clocks make untrusted (``latency_trusted`` false) never meet it."""
    p99 = step.get("p99_ms")
    return p99 is not None and p99 <= budget_ms and all(step.get(k, 0) == 0 for k in CORRECTNESS) \
        and not step.get("connect", {}).get("failed") and step.get("latency_trusted", True) is not False


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline`` to 4 significant digits (a 1,000x gap stays visible), or None when
    either is missing or the baseline is 0."""
    if value is None or baseline in (None, 0):
        return None
    return float(f"{value / baseline:.4g}")


def cpu_percent(cpu_seconds: float, wall_seconds: float) -> float | None:
    """CPU time over wall time as a percentage of one core (200 % is both cores of this machine)."""
    return round(100 * cpu_seconds / wall_seconds, 1) if wall_seconds > 0 else None
