"""Evidence gathered on a thread of its own while the other checks run.

MET-3's idle window and ROB-6's silent clients each need a minute of wall time on a gateway
instance of their own. Spent inside their tests, that minute would add to every run; started
with the run and read at the end, it overlaps the other checks. This is the thread, the bounded
wait for its result and the early end both share.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from realtime_conformance.harness.providers.target import Target

E = TypeVar("E")


class BackgroundWatch(Generic[E]):
    """A watch run by ``asyncio.run`` on a daemon thread; its result (or why there is none) is kept
    for the test that reads it. Subclasses give ``_watch`` and ``_failed``, and may end early their
    own way (``_end_early``; by default the watch's task is cancelled)."""

    what = "background watch"  # named in the evidence when it gives no result
    cancelled = "the run ended before the watch was complete"

    def __init__(self, target: "Target", span_s: float) -> None:
        self.target = target
        self.span_s = span_s  # how long the watch lasts at most, before its start-up and slack
        self.started_at: float | None = None
        self._evidence: E | None = None
        self._done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: "asyncio.Task[Any] | None" = None
        self._thread = threading.Thread(target=self._run, name=f"rtc-{self.what.replace(' ', '-')}", daemon=True)

    def start(self) -> "BackgroundWatch[E]":
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._evidence = asyncio.run(self._main())
        except asyncio.CancelledError:
            self._evidence = self._failed(self.cancelled)
        except BaseException as exc:  # reported by the watch's test, never lost in a thread
            self._evidence = self._failed(f"{type(exc).__name__}: {exc}")
        finally:
            self._done.set()

    async def _main(self) -> E:
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        return await self._watch()

    async def _watch(self) -> E:  # pragma: no cover - per watch
        raise NotImplementedError

    def _failed(self, error: str) -> E:  # pragma: no cover - per watch
        raise NotImplementedError

    def _end_early(self) -> None:
        """On the watch's loop: make it finish now."""
        if self._task is not None:
            self._task.cancel()

    async def evidence(self, slack_s: float = 60.0) -> E:
        """The result, waiting at most for what is left of the span plus ``slack_s`` (start-up, controls)."""
        elapsed = time.monotonic() - (self.started_at or time.monotonic())
        timeout = max(0.0, self.span_s - elapsed) + slack_s
        if not await asyncio.to_thread(self._done.wait, timeout):
            return self._failed(f"the {self.what} gave no result within {timeout:.0f} s")
        assert self._evidence is not None
        return self._evidence

    def stop(self, timeout: float = 15.0) -> None:
        """End the watch early (the run is over or interrupted) and let its thread close what it opened."""
        if self._loop is not None and not self._done.is_set():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._end_early)
        if self._thread.is_alive():
            self._thread.join(timeout)
