"""The one bounded wait every recorder uses: re-check a condition whenever something is recorded."""

from __future__ import annotations

import asyncio
import time
from typing import Callable

# A condition may also turn true with time alone (a deadline passing), so it is re-checked
# at least this often even when nothing is recorded.
RECHECK_S = 0.25


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
