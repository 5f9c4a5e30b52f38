"""The bounded waits every recorder uses: re-check a condition whenever something is recorded.

Two kinds. ``wait_until`` waits for a condition up to a fixed timeout. ``wait_while_arriving``
is the wait for deliveries, and carries the harness's rule that late is not lost: it keeps
waiting as long as deliveries keep arriving (progress within ``idle_s``), up to a hard cap, so
a gateway that is only slow (a GC pause, a stalled consumer with a backlog behind it) is given
the time to deliver, and a gateway that delivers nothing more is not waited for.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

# A condition may also turn true with time alone (a deadline passing), so it is re-checked
# at least this often even when nothing is recorded.
RECHECK_S = 0.25
# The longest any wait for deliveries lasts while they keep arriving. A stalled consumer that
# pauses 1.2 s before every 10th emit needs about 26 s to work through FAULT-3's 220 events.
LATE_CAP_S = 60.0


async def wait_until(changed: asyncio.Event, predicate: Callable[[], bool], timeout: float) -> bool:
    """True once ``predicate()`` holds, re-checked each time ``changed`` is set; False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), timeout=min(remaining, RECHECK_S))
        except asyncio.TimeoutError:
            pass
    return True


async def wait_while_arriving(changed: asyncio.Event, predicate: Callable[[], bool], progress: Callable[[], int],
                              *, idle_s: float, first_s: float | None = None, cap_s: float = LATE_CAP_S) -> bool:
    """True once ``predicate()`` holds. False when nothing new has arrived for ``idle_s``
    (``first_s`` before the first arrival, for a gateway that is still coming back), or at ``cap_s``.

    ``progress()`` counts what has arrived so far (any delivery to the waiting clients): each
    change of it restarts the idle clock."""
    start = time.monotonic()
    deadline = start + cap_s
    seen, last_change, moved = progress(), start, False
    while not predicate():
        now = time.monotonic()
        current = progress()
        if current != seen:
            seen, last_change, moved = current, now, True
        allowed = idle_s if moved else max(idle_s, first_s or 0.0)
        if now >= deadline or now - last_change >= allowed:
            return False
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), timeout=min(RECHECK_S, deadline - now,
                                                                 last_change + allowed - now))
        except asyncio.TimeoutError:
            pass
    return True
