"""Virtual hosts for dedicated gateways, made a few at a time just ahead of need.

Making a vhost costs about a second of rabbitmqctl per vhost, and every rabbitmqctl call of the
run (a check reading a queue's counts) waits behind one in flight. Making the run's whole
supply at start kept DLV-8, the first check that needs one, waiting 10-20 s behind an import
of 16 and paid for vhosts a run without the ROB area never uses. Here a background thread keeps
a small stock: small batches, so other rabbitmqctl calls get their turn between them, and no
more than the checks take plus the stock.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from typing import Callable

MakeVhosts = Callable[[list[str], str], list[str]]


class VhostPool:
    """A stock of ``ahead`` ready vhosts, refilled in batches of ``batch`` on a daemon thread.

    ``take()`` returns a vhost, or None once the broker could not make any (the caller then
    isolates another way); it waits at most ``timeout`` seconds.
    """

    def __init__(self, make: MakeVhosts, user: str, *, ahead: int = 2, batch: int = 3, limit: int = 64) -> None:
        if ahead < 1 or batch < 1 or limit < 1:
            raise ValueError(f"VhostPool(ahead={ahead}, batch={batch}, limit={limit}): each must be at least 1")
        self._make, self._user = make, user
        self._ahead, self._batch, self._limit = ahead, batch, limit
        self._ready: deque[str] = deque()
        self._waiting = 0  # takers blocked in take()
        self._made = 0
        self._failed = False
        self._closed = False
        self._busy = False  # a batch is being made
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._fill, name="rtc-vhost-pool", daemon=True)
        self._thread.start()

    def _wanted(self) -> int:
        """How many to make now: what the takers wait for plus the stock, within the limit."""
        want = self._waiting + self._ahead - len(self._ready)
        return max(0, min(want, self._batch, self._limit - self._made))

    def _fill(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._failed or self._wanted() > 0)
                if self._closed or self._failed:
                    return
                names = [f"rtc-{uuid.uuid4().hex[:8]}" for _ in range(self._wanted())]
                self._busy = True
            try:
                made = self._make(names, self._user)
            except Exception:  # a broker gone mid-call: nothing more can be made
                made = []
            with self._cond:
                self._busy = False
                self._made += len(names)
                self._ready.extend(made)
                self._failed = not made
                self._cond.notify_all()

    def take(self, timeout: float = 60.0) -> str | None:
        """One vhost nobody else gets; None if none could be made within ``timeout`` seconds."""
        with self._cond:
            self._waiting += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: self._ready or self._failed or self._closed
                                    or (self._made >= self._limit and not self._busy), timeout=timeout)
                return self._ready.popleft() if self._ready else None
            finally:
                self._waiting -= 1
                self._cond.notify_all()

    def close(self, timeout: float = 60.0) -> None:
        """Stop making vhosts; waits (bounded) for a batch in flight so the broker is not pulled away under it."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
