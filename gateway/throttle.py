"""Rate-limited error logging for what clients send (ROB-8).

The Socket.IO stack logs an ERROR with a full traceback for each malformed packet or request
it meets (python-engineio's "message async handler error", uvicorn's "Exception in ASGI
application", asyncio's "Task exception was never retrieved"). One client sending garbage as
fast as it can would then grow the log by kilobytes per frame, until the disk or the log bill
gives out. So the library records that carry a traceback are rate-limited per kind: the first
of a kind in a window keeps its traceback (a real bug still shows how it happened); the
others in that window are counted, not written, and the next one written after the window
says how many were left out.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

WINDOW_S = 60.0
# The loggers that report errors caused by what a client sent; the gateway's own logger is not
# throttled (its errors are about the broker, the database, the configuration).
CLIENT_FACING = ("engineio", "socketio", "uvicorn", "asyncio", "websockets")


def _kind(record: logging.LogRecord) -> tuple[str, str]:
    """What makes two records "the same error": the logger and the first line of its message
    (python-engineio words every handler failure alike, so one malformed-packet class cannot
    bring its own traceback a minute; at debug level every one is written)."""
    return record.name, record.getMessage().split("\n", 1)[0][:60]


class ClientErrorThrottle(logging.Filter):
    """Lets through the first record with a traceback of each kind per ``window_s``; counts the rest."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s, self.clock = window_s, clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # kind -> (window start, suppressed)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or not record.name.startswith(CLIENT_FACING):
            return True
        kind = _kind(record)
        now = self.clock()
        with self._lock:
            started, suppressed = self._seen.get(kind, (None, 0))
            if started is not None and now - started < self.window_s:
                self._seen[kind] = (started, suppressed + 1)
                return False
            if len(self._seen) > 1000:  # bounded, whatever a client makes the libraries raise
                self._seen.clear()
            self._seen[kind] = (now, 0)
        record.throttled = f"at most one like this per {self.window_s:g} s"
        if suppressed:
            record.suppressed_since_last = suppressed
        return True
