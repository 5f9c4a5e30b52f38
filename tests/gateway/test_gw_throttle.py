"""The log throttle (ROB-8): library tracebacks once per kind and window, with a count of the rest."""

from __future__ import annotations

import logging
import sys

from realtime_conformance.gateway.throttle import ClientErrorThrottle


def _record(name: str, msg: str, with_traceback: bool = True) -> logging.LogRecord:
    try:
        raise ValueError("Unknown packet type.")
    except ValueError:
        exc_info = sys.exc_info() if with_traceback else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, exc_info)


def test_one_traceback_per_kind_and_window_then_a_count():
    now = [0.0]
    throttle = ClientErrorThrottle(window_s=60, clock=lambda: now[0])
    passed = [throttle.filter(_record("engineio.server", "message async handler error")) for _ in range(5)]
    assert passed == [True, False, False, False, False]
    assert throttle.filter(_record("uvicorn.error", "Exception in ASGI application\n"))  # another kind
    now[0] = 61.0
    again = _record("engineio.server", "message async handler error")
    assert throttle.filter(again) and again.suppressed_since_last == 4


def test_records_without_a_traceback_and_the_gateways_own_pass():
    throttle = ClientErrorThrottle(window_s=60, clock=lambda: 0.0)
    assert all(throttle.filter(_record("engineio.server", "plain", with_traceback=False)) for _ in range(3))
    assert all(throttle.filter(_record("gateway", "consumer ended with an error")) for _ in range(3))
