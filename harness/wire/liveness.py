"""A positive control for checks that try to take a gateway down: paced events to a bystander.

A crash that leaves the port closed is easy to see; a gateway whose process lives on but whose
event loop is wedged, or whose consumer died, is not. So liveness is judged by what a user
would notice: a client of a tenant of its own keeps receiving events, published at a steady
pace while the risky inputs are sent and after them, within the latency budget (DLV-2's), and
a fresh client can still connect. A process the harness started that has exited is reported
with its exit status and its last log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from realtime_conformance.harness.wire.clients import TenantClient
from realtime_conformance.harness.wire.scenario import Publish, Scenario

PACE_S = 0.1  # one control event every 100 ms: often enough to see a stall, cheap for any gateway


@dataclass
class LivenessReport:
    """What the bystander saw: its deliveries and their latencies, and the process's state."""

    published: int = 0
    missing: list[int] = field(default_factory=list)  # seqs lost: a later event reached the bystander, not these
    pending: list[int] = field(default_factory=list)  # seqs still arriving: nothing later had arrived either
    late: int = 0  # deliveries over the budget
    p99_ms: float | None = None
    max_ms: float | None = None
    exit_status: int | None = None  # the gateway process's exit status, if it has exited
    log_tail: str = ""
    fresh_handshake: bool | None = None  # a new client connected and received an event afterwards
    log_lines: int | None = None  # lines the gateway logged while the inputs were sent (where its log is readable)

    @property
    def alive(self) -> bool:
        return self.exit_status is None and not self.missing and self.fresh_handshake is not False

    def evidence(self) -> dict[str, Any]:
        return {"published": self.published, "missing": self.missing[:20], "still_arriving": self.pending[:20],
                "late": self.late,
                "p99_ms": self.p99_ms, "max_ms": self.max_ms, "exit_status": self.exit_status,
                "fresh_handshake": self.fresh_handshake, "log_lines_during": self.log_lines, "log_tail": self.log_tail[-1500:] if self.log_tail else ""}


def exit_status(gateway: Any) -> int | None:
    """The exit status of a gateway process the harness started, None while it runs (or if unknowable)."""
    code = getattr(gateway, "returncode", None)
    return code if isinstance(code, int) else None


class Liveness:
    """``async with Liveness(sc, instance.gateway) as alive: ...`` paces control events to a
    bystander client while the body runs; ``await alive.finish()`` stops and judges.

    The bystander's tenant is its own, so nothing the check sends can be meant for it."""

    def __init__(self, sc: Scenario, gateway: Any, *, pace_s: float = PACE_S) -> None:
        self.sc, self.gateway, self.pace_s = sc, gateway, pace_s
        self.tenant = sc.tenant("alive")
        self.client: TenantClient | None = None
        self.publishes: list[Publish] = []
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.report = LivenessReport()
        self._log_start: int | None = None

    async def __aenter__(self) -> "Liveness":
        self._log_start = _line_count(self.gateway)
        self.client = (await self.sc.connect(self.tenant))[0]
        self._task = asyncio.create_task(self._pace())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._halt()

    async def _pace(self) -> None:
        n = 0
        while not self._stop.is_set() and n < 10_000:  # bounded: ~17 minutes at the default pace
            self.publishes.append(await self.sc.publish_control(self.tenant, n))
            n += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.pace_s)  # the pace, not a synchronisation

    async def _halt(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5.0)
            self._task = None

    def exited(self) -> int | None:
        return exit_status(self.gateway)

    async def exited_within(self, timeout: float) -> int | None:
        """The exit status if the process ends within ``timeout``, else None. Polled (a process's
        end is no event this loop can await) and bounded; call it after an input that closed its
        connection, so a crash is pinned on the input that caused it, not the next one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = self.exited()
            if status is not None or loop.time() >= deadline:
                return status
            await asyncio.sleep(0.01)

    async def finish(self) -> LivenessReport:
        """Stop pacing, publish one event after the inputs, wait (bounded) for every delivery, try a
        fresh handshake, and say what was seen."""
        await self._halt()
        assert self.client is not None
        end = _line_count(self.gateway)
        if end is not None and self._log_start is not None:
            self.report.log_lines = end - self._log_start
        self.publishes.append(await self.sc.publish_control(self.tenant, 10_001))
        # Late is not lost: an event is missing only once a later one reached the bystander.
        outcome = await self.sc.delivery([self.client], self.publishes)
        report = self.report
        report.published = len(self.publishes)
        report.missing = outcome.lost.get(self.client.name, [])
        report.pending = outcome.pending.get(self.client.name, [])
        result = self.sc.check([self.client])
        values = sorted(v for vs in result.latencies_ms.values() for v in vs)
        if values:
            report.p99_ms = round(values[min(len(values) - 1, int(0.99 * len(values)))], 1)
            report.max_ms = round(values[-1], 1)
        report.late = len(result.of("late"))
        report.exit_status = self.exited()
        if report.exit_status is None:
            report.fresh_handshake = await self._fresh_handshake()
        if report.exit_status is not None or report.missing or report.fresh_handshake is False:
            report.log_tail = _tail(self.gateway)
        return report

    async def _fresh_handshake(self) -> bool | None:
        tenant = self.sc.tenant("fresh")
        fresh = self.sc.client(tenant)
        if not await fresh.connect(timeout=5.0):
            return False
        sent = await self.sc.publish_control(tenant, 1)
        outcome = await self.sc.delivery([fresh], [sent])
        if outcome.pending:  # nothing reached the new client, late or lost: not a refusal
            self.report.pending.append(sent.seq)
            return None
        return not outcome.lost


def _line_count(gateway: Any) -> int | None:
    """Lines in the gateway's whole log file where the harness writes one, else in what logs() returns."""
    path = getattr(getattr(gateway, "_process", None), "log_path", None)
    if path is not None:
        with contextlib.suppress(OSError):
            with open(path, "rb") as log:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: log.read(1 << 16), b""))
    with contextlib.suppress(Exception):
        text = str(gateway.logs())
        return text.count("\n") if text else None
    return None


def _tail(gateway: Any, lines: int = 30) -> str:
    with contextlib.suppress(Exception):
        return "\n".join(str(gateway.logs()).splitlines()[-lines:])
    return ""


def since(t0: float) -> float:
    """Milliseconds since ``t0`` (perf_counter), for timelines."""
    return (time.perf_counter() - t0) * 1000
