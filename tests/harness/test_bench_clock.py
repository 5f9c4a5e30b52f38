"""The clock rule of workers on other machines: correction, drift, and when latencies are trusted
(10 % of p50 for both the drift and the round trip)."""

from __future__ import annotations

from realtime_conformance.harness.bench import clock


def test_correction_is_minus_the_mean_offset_and_drift_their_difference():
    c = clock.worker_clock({"offset_ms": 100.0, "rtt_ms": 0.2}, {"offset_ms": 100.4, "rtt_ms": 0.3})
    assert (c["correction_ms"], c["drift_ms"], c["rtt_ms"]) == (-100.2, 0.4, 0.3)
    assert clock.worker_clock({"offset_ms": 1.0, "rtt_ms": 0.2}, None)["measured"] is False


def test_trusted_only_when_drift_and_round_trip_are_under_a_tenth_of_p50():
    good = clock.worker_clock({"offset_ms": 0.0, "rtt_ms": 0.2}, {"offset_ms": 0.05, "rtt_ms": 0.25})
    assert clock.trusted({0: good}, 3.0)[0] is True
    assert clock.trusted({0: good}, 2.5) == (False, "worker 0: round trip 0.250 ms is not under 10 % of p50 "
                                                    "(0.250 ms)")
    drifting = clock.worker_clock({"offset_ms": 0.0, "rtt_ms": 0.1}, {"offset_ms": -0.5, "rtt_ms": 0.1})
    assert "clock drift -0.500 ms" in clock.trusted({0: good, 1: drifting}, 4.0)[1]
    assert clock.trusted({0: clock.worker_clock(None, None)}, 4.0)[0] is False
    assert clock.trusted({0: good}, None) == (False, "no latency was measured")
