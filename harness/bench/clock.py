"""Clocks of workers on other machines: offset, round trip, drift, and when latencies are trusted.

Latency is a worker's receive stamp minus the publisher's send stamp. On one machine both read
the same CLOCK_MONOTONIC and subtract exactly. Across machines each worker's offset (its clock
minus the publishers' host's) is measured before and after a step (``master.py``); stamps are
corrected by the mean of the two. The correction is only as good as the measurement: a step's
latencies are trusted when, for every worker, the drift between the two offsets and the larger
round trip are both under ``TRUST_SHARE`` of the step's p50 (pure functions, tested alone).
"""

from __future__ import annotations

from typing import Any, Mapping

TRUST_SHARE = 0.10


def worker_clock(before: Mapping[str, float] | None, after: Mapping[str, float] | None) -> dict[str, Any]:
    """One worker's figures: offsets and round trips before and after, the drift, and the
    correction (ms) to add to its stamps; unmeasured when either exchange got no answer."""
    if not before or not after:
        return {"measured": False, "before": before, "after": after, "correction_ms": None,
                "drift_ms": None, "rtt_ms": None}
    drift = after["offset_ms"] - before["offset_ms"]
    return {"measured": True, "before": dict(before), "after": dict(after),
            "correction_ms": round(-(before["offset_ms"] + after["offset_ms"]) / 2, 4),
            "drift_ms": round(drift, 4), "rtt_ms": round(max(before["rtt_ms"], after["rtt_ms"]), 4)}


def trusted(clocks: Mapping[Any, Mapping[str, Any]], p50_ms: float | None) -> tuple[bool, str]:
    """Whether a step's latencies can be believed, and why (the figure that decided)."""
    if p50_ms is None:
        return False, "no latency was measured"
    limit = TRUST_SHARE * p50_ms
    for worker, c in clocks.items():
        if not c.get("measured"):
            return False, f"worker {worker}: its clock offset was not measured before and after the step"
        if abs(c["drift_ms"]) >= limit:
            return False, f"worker {worker}: clock drift {c['drift_ms']:.3f} ms is not under 10 % of p50 ({limit:.3f} ms)"
        if c["rtt_ms"] >= limit:
            return False, f"worker {worker}: round trip {c['rtt_ms']:.3f} ms is not under 10 % of p50 ({limit:.3f} ms)"
    return True, f"drift and round trip of every worker under 10 % of p50 ({limit:.3f} ms)"
