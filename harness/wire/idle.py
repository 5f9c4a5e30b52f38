"""MET-3's idle portal tabs: watched on a gateway of their own while the other checks run.

The seed promises that open tabs with nothing happening make no HTTP requests. Proving it
takes a window of real time (a minute by default) in which nothing is published to the
tabs' tenant. That window is evidence, not a wait: on a target the harness can start, it
runs in a thread of its own against a dedicated gateway instance (same command, same
configuration, a vhost of its own), so the other checks' traffic cannot reach it and the
run does not stand still for it. On a URL target it runs inside the MET-3 test, on the
main instance, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from realtime_conformance.harness import samples
from realtime_conformance.harness.wire.background import BackgroundWatch

if TYPE_CHECKING:
    from realtime_conformance.harness.providers.target import Instance, Target

TABS = 3
QUERIES = {("dashboard-metrics",), ("conversations",)}


@dataclass
class IdleEvidence:
    """What the idle tabs did; the MET-3 test turns it into a verdict."""

    where: str
    window_s: float
    control_arrived: bool = False
    settled: bool = False
    quiet_for_s: float | None = None
    http_requests: list[int] = field(default_factory=list)
    socket_events: list[int] = field(default_factory=list)
    disconnects: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def watch_idle_tabs(instance: "Instance", window_s: float, *, where: str,
                          stop: asyncio.Event | None = None) -> IdleEvidence:
    """Three dashboard tabs of a fresh tenant: a positive control, a settling period, then ``window_s``
    of nothing published, counting the HTTP requests and socket events the tabs see meanwhile."""
    evidence = IdleEvidence(where=where, window_s=window_s)
    async with instance.scenario() as sc:
        tenant = sc.tenant("idle")
        tabs = [sc.tab(tenant, active_queries=set(QUERIES)) for _ in range(TABS)]
        for tab in tabs:
            await tab.connect()
        control = await sc.publish(tenant, "metrics_update", samples.metrics(1))  # the tabs do react
        try:
            arrived = [(await tab.wait_for_event("metrics_update", timeout=sc.grace_s, since=0))[0] for tab in tabs]
        except TimeoutError:
            return evidence
        evidence.control_arrived = True
        # Quiet for half again as long as a delivery takes here, so an event still on its way
        # (lateness is DLV-2's business) does not land in the window and pass for idle traffic.
        quiet_for = max(1.0, 1.5 * (max(arrived) - control.sent_at))
        evidence.quiet_for_s = round(quiet_for, 2)
        settled = await asyncio.gather(*(t.wait_quiescent(quiet_for=quiet_for, timeout=5.0 + quiet_for) for t in tabs))
        if not all(settled):
            return evidence
        evidence.settled = True
        requests = [len(t.http_requests) for t in tabs]
        events = [len(t.events) for t in tabs]
        lives = [sum(1 for _, s in t.state_history if s == "live") for t in tabs]
        # The measurement window: nothing is published to this tenant, nothing should happen.
        stop = stop or asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=window_s)
        if stop.is_set():
            evidence.error = "the run ended before the idle window was complete"
        evidence.http_requests = [len(t.http_requests) - n for t, n in zip(tabs, requests)]
        evidence.socket_events = [len(t.events) - n for t, n in zip(tabs, events)]
        evidence.disconnects = sum(sum(1 for _, s in t.state_history if s == "live") - n
                                   for t, n in zip(tabs, lives))
    return evidence


class IdleWatch(BackgroundWatch[IdleEvidence]):
    """The idle window run in the background, on a dedicated gateway instance, from the start of the run."""

    what = "idle watch"

    def __init__(self, target: "Target", window_s: float) -> None:
        super().__init__(target, window_s)
        self.window_s = window_s
        self._stop: asyncio.Event | None = None

    async def _watch(self) -> IdleEvidence:
        self._stop = asyncio.Event()
        async with self.target.dedicated("idle") as instance:
            return await watch_idle_tabs(instance, self.window_s, stop=self._stop,
                                         where="a dedicated gateway instance, while the other checks ran")

    def _failed(self, error: str) -> IdleEvidence:
        return IdleEvidence(where="a dedicated gateway instance", window_s=self.window_s, error=error)

    def _end_early(self) -> None:
        """End the window early: the tabs close and what the window saw so far is the evidence."""
        if self._stop is not None:
            self._stop.set()
