"""Floods of hostile clients, sent from a process of their own.

A flood sent from the harness's own event loop would starve the very client whose experience is
being judged (the legitimate connect, the bystander's deliveries) on a 2-core machine, and the
harness would measure itself. So, as the bench's publisher does, the flood runs in a spawned child
process on the other core, and tells the parent over a pipe when each phase starts, so what the
parent measures meanwhile can be put in the phase it happened in. Stamps are
``time.perf_counter()`` (CLOCK_MONOTONIC, one clock for every process of the machine).

Everything is bounded: counts, concurrency, and the whole flood's time (``max_s``), after which
the child is killed. Floods go to loopback addresses only.

Phases, in this order, each only if asked for:

- ``refused``: ``refused`` unauthenticated handshakes, ``concurrency`` at a time: a WebSocket
  upgrade, the Engine.IO open, a Socket.IO CONNECT with no token or a garbage one; closed by us
  once answered (a refusal is expected);
- ``connections``: ``connections`` connections with one valid ``token``, opened ``concurrency``
  at a time and held (Engine.IO pings answered) until all are up; then ``held`` for ``hold_s``;
  then ``closing``: all closed at once with a WebSocket close;
- ``events``: a client with ``token`` emitting small Socket.IO events as fast as the sockets take
  them, from ``event_connections`` websocket connections at once (the tabs of one user), for
  ``events_s`` or ``max_events``, whichever comes first; then reset (RST), so what the gateway has
  not read yet is dropped, not worked through after the flood. With ``polling``, as many tabs do
  the same over the polling transport at the same time, each POST carrying several packets, as
  socket.io-client sends what it queued while polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import ipaddress
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

if __package__:
    from realtime_conformance.harness.wire import rawclient
else:  # run as a script (the flood's own process): rawclient sits beside it and needs only the stdlib
    import rawclient  # type: ignore[no-redef]

START_TIMEOUT_S = 10.0  # a bare interpreter with asyncio: a fraction of a second, seconds on a loaded machine
POLLING_BATCH = 16  # packets per POST: what every Engine.IO server decodes (python-engineio's cap is 16)
BAD_AUTHS: tuple[Any, ...] = (None, {}, {"token": "not.a.jwt"}, {"token": ""})


@dataclass(frozen=True)
class FloodPlan:
    """What one flood sends (see the module's docstring for the phases)."""

    url: str
    path: str = "/socket.io/"
    refused: int = 0
    connections: int = 0
    token: str = ""
    hold_s: float = 0.2
    events_s: float = 0.0
    max_events: int = 5_000_000
    event_names: tuple[str, ...] = ("typing", "message", "presence")
    polling: bool = True  # the events phase also floods over polling, one POST carrying many packets
    event_connections: int = 1  # websocket connections (tabs of the flooding client) emitting at once
    concurrency: int = 32
    max_s: float = 20.0

    def __post_init__(self) -> None:
        host = urlsplit(self.url).hostname or ""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"flood: {self.url!r} is not a loopback address; floods are aimed at gateways the "
                             "harness started on this machine only")
        if (self.connections or self.events_s) and not self.token:
            raise ValueError("flood: connections and events need a valid token (token=...)")
        for name, most in (("refused", 100_000), ("connections", 100_000), ("max_events", 10_000_000),
                           ("concurrency", 1_000), ("event_connections", 256)):
            if not 0 <= getattr(self, name) <= most:
                raise ValueError(f"flood: {name}={getattr(self, name)} is out of range (0..{most:,})")
        if not 0 < self.max_s <= 120:
            raise ValueError(f"flood: max_s={self.max_s} must be in (0, 120] seconds")


@dataclass
class FloodReport:
    """What the child saw, per phase: when it started and ended, and its counts."""

    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str = ""
    killed: bool = False  # the child overran max_s and was killed: counts are missing

    def span(self, phase: str) -> tuple[float, float] | None:
        got = self.phases.get(phase)
        return (got["started"], got["ended"]) if got and "ended" in got else None


# -- the child -------------------------------------------------------------------------------------

async def _open(plan: FloodPlan, timeout: float = 5.0) -> Any:
    return await rawclient.RawWebSocket.open(plan.url, path=plan.path, timeout=timeout)


async def _close(ws: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.send_frame(rawclient.CLOSE, b"\x03\xe8"), 1.0)
    with contextlib.suppress(Exception):
        ws.writer.close()


async def _refused(plan: FloodPlan) -> dict[str, Any]:
    counts = {"sent": 0, "refused": 0, "accepted": 0, "no_answer": 0, "no_connection": 0}
    gate = asyncio.Semaphore(max(1, plan.concurrency))

    async def one(n: int) -> None:
        async with gate:
            counts["sent"] += 1
            try:
                ws = await _open(plan)
            except Exception:  # noqa: BLE001 - refused, reset or timed out: all count as no connection
                counts["no_connection"] += 1
                return
            try:
                answer = await ws.socketio_connect(BAD_AUTHS[n % len(BAD_AUTHS)], timeout=5.0)
                key = "no_answer" if answer is None else "refused" if answer.text.startswith("44") else "accepted"
                counts[key] += 1
            finally:
                await _close(ws)

    await asyncio.gather(*(one(n) for n in range(plan.refused)))
    return counts


async def _connections(plan: FloodPlan, phase: Callable[[str], None]) -> dict[str, Any]:
    counts = {"sent": 0, "connected": 0, "refused": 0, "no_answer": 0, "no_connection": 0,
              "closed_by_server_while_held": 0}
    gate = asyncio.Semaphore(max(1, plan.concurrency))
    held: list[Any] = []
    readers: list[asyncio.Task[None]] = []

    async def keep_reading(ws: Any) -> None:  # answers the gateway's pings while held
        while True:
            got = await ws.recv(1.0)
            if ws.closed_by_server is not None or (got is None and ws.gone):
                counts["closed_by_server_while_held"] += 1
                return

    async def one() -> None:
        async with gate:
            counts["sent"] += 1
            try:
                ws = await _open(plan)
            except Exception:  # noqa: BLE001
                counts["no_connection"] += 1
                return
            answer = await ws.socketio_connect({"token": plan.token}, timeout=5.0)
            if answer is not None and answer.text.startswith("40"):
                counts["connected"] += 1
                held.append(ws)
                readers.append(asyncio.ensure_future(keep_reading(ws)))
            else:
                counts["no_answer" if answer is None else "refused"] += 1
                await _close(ws)

    try:
        await asyncio.gather(*(one() for _ in range(plan.connections)))
        phase("held")
        await asyncio.sleep(plan.hold_s)  # the flood's shape: all connections open at once, for a while
        phase("closing")
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*(_close(ws) for ws in held))
    return counts


def _event_packets(plan: FloodPlan, start: int, count: int) -> list[str]:
    names = plan.event_names or ("typing",)
    return [f'42["{names[n % len(names)]}",{{"n":{n}}}]' for n in range(start, start + count)]


def _open_packet(text: str) -> dict[str, Any] | None:
    if "0{" not in text:
        return None
    with contextlib.suppress(ValueError):
        opened = json.loads(text[text.index("0{") + 1:].split("\x1e")[0])
        return opened if isinstance(opened, dict) else None
    return None


async def _polling_events(plan: FloodPlan) -> dict[str, Any]:
    """One client on the polling transport, emitting as fast as it can: as socket.io-client does when
    it polls, every POST carries the packets queued meanwhile (here POLLING_BATCH, or fewer if a
    quarter of the advertised maxPayload holds fewer). Long-poll GETs answer the gateway's pings."""
    http = rawclient.http_request
    counts: dict[str, Any] = {"sent": 0, "posts": 0, "connected": False, "closed_by_server_after_s": None}
    base = f"{plan.path}?EIO=4&transport=polling"
    opened = _open_packet((await http(plan.url, "GET", base, timeout=5.0)).text)
    if opened is None or not opened.get("sid"):
        counts["error"] = "no Engine.IO session over polling"
        return counts
    query = f"{base}&sid={opened['sid']}"
    text = {"Content-Type": "text/plain;charset=UTF-8"}
    await http(plan.url, "POST", query, body=("40" + json.dumps({"token": plan.token})).encode(), headers=text)
    answer = await http(plan.url, "GET", query, timeout=5.0)
    if "40{" not in answer.text:
        counts["error"] = f"CONNECT over polling not accepted: {answer.describe()} {answer.text[:200]}"
        return counts
    counts["connected"] = True
    limit = opened.get("maxPayload") if isinstance(opened.get("maxPayload"), int) else 64 * 1024
    # python-engineio decodes at most 16 packets per POST (and drops the rest of a bigger one).
    per_post = max(1, min(POLLING_BATCH, (limit // 4) // 32))
    counts["packets_per_post"] = per_post
    started = time.perf_counter()

    async def keep_polling() -> None:  # the long-poll: pings arrive here and are answered
        while True:
            got = await http(plan.url, "GET", query, timeout=5.0)
            packets = got.text.split("\x1e")
            if got.status != 200 or "1" in packets:
                counts["closed_by_server_after_s"] = round(time.perf_counter() - started, 3)
                return
            if "2" in packets:
                await http(plan.url, "POST", query, body=b"3", headers=text)

    poller = asyncio.ensure_future(keep_polling())
    try:
        while (time.perf_counter() - started < plan.events_s and counts["sent"] < plan.max_events
               and not poller.done()):
            body = "\x1e".join(_event_packets(plan, counts["sent"], per_post)).encode()
            got = await http(plan.url, "POST", query, body=body, headers=text, timeout=5.0)
            if got.status != 200:
                counts["refused_post"] = got.describe()
                break
            counts["sent"] += per_post
            counts["posts"] += 1
    finally:
        counts["elapsed_s"] = round(time.perf_counter() - started, 3)
        poller.cancel()
    return counts


async def _events(plan: FloodPlan) -> dict[str, Any]:
    """Over websocket and, unless the plan says not to, over polling too, at the same time."""
    tabs = max(1, plan.event_connections)
    got = await asyncio.gather(*(_websocket_events(plan) for _ in range(tabs)),
                               *(_polling_events(plan) for _ in range(tabs if plan.polling else 0)))
    out = {"websocket": _summed(got[:tabs])}
    if plan.polling:
        out["polling"] = _summed(got[tabs:])
    return out


def _summed(tabs: list[dict[str, Any]]) -> dict[str, Any]:
    """The counts of several tabs of one transport as one."""
    out: dict[str, Any] = {"connections": len(tabs), "connected": all(t.get("connected") for t in tabs),
                           "sent": sum(t.get("sent", 0) for t in tabs),
                           "elapsed_s": max((t.get("elapsed_s", 0.0) for t in tabs), default=0.0),
                           "closed_by_server": sum(t.get("closed_by_server_after_s") is not None for t in tabs)}
    for key in ("drain_stalls", "posts"):
        if any(key in t for t in tabs):
            out[key] = sum(t.get(key, 0) for t in tabs)
    errors = [t["error"] for t in tabs if t.get("error")]
    if errors:
        out["error"] = errors[0]
    return out


async def _websocket_events(plan: FloodPlan) -> dict[str, Any]:
    TEXT, frame, reset = rawclient.TEXT, rawclient.frame, rawclient.reset
    counts: dict[str, Any] = {"sent": 0, "connected": False, "closed_by_server_after_s": None, "drain_stalls": 0}
    try:
        ws = await _open(plan)
    except Exception as exc:  # noqa: BLE001
        counts["error"] = f"no connection: {type(exc).__name__}"
        return counts
    answer = await ws.socketio_connect({"token": plan.token}, timeout=5.0)
    if answer is None or not answer.text.startswith("40"):
        counts["error"] = f"CONNECT not accepted: {answer.text[:200] if answer else 'no answer'}"
        ws.abort()
        return counts
    counts["connected"] = True
    batch_size = 200
    batch = b"".join(frame(TEXT, packet.encode()) for packet in _event_packets(plan, 0, batch_size))
    started = time.perf_counter()

    async def keep_reading() -> None:  # answers pings; a CLOSE from the gateway ends the flood at once
        while True:
            got = await ws.recv(1.0)
            if ws.closed_by_server is not None or (got is None and ws.gone):
                counts["closed_by_server_after_s"] = round(time.perf_counter() - started, 3)
                return

    reader = asyncio.ensure_future(keep_reading())
    try:
        while (time.perf_counter() - started < plan.events_s and counts["sent"] < plan.max_events
               and not reader.done() and not ws.writer.is_closing()):
            ws.writer.write(batch)
            try:
                await asyncio.wait_for(ws.writer.drain(), 1.0)
            except asyncio.TimeoutError:
                counts["drain_stalls"] += 1  # the gateway stopped reading for a second
            except (ConnectionError, OSError):
                break
            counts["sent"] += batch_size
    finally:
        counts["elapsed_s"] = round(time.perf_counter() - started, 3)
        reader.cancel()
        reset(ws.writer)
    return counts


async def run_plan(plan: FloodPlan, send: Callable[..., None]) -> FloodReport:
    """Run every phase ``plan`` asks for, in order; ``send`` gets ``("phase", name, stamp)``."""
    report = FloodReport()
    current: list[str] = []

    def phase(name: str) -> None:
        now = time.perf_counter()
        if current:
            report.phases[current[-1]]["ended"] = now
        current.append(name)
        report.phases[name] = {"started": now}
        send("phase", name, now)

    if plan.refused:
        phase("refused")
        report.phases["refused"].update(await _refused(plan))
    if plan.connections:
        phase("connections")
        counts = await _connections(plan, phase)
        report.phases["connections"].update(counts)
    if plan.events_s > 0:
        phase("events")
        report.phases["events"].update(await _events(plan))
    phase("done")
    return report


def _main() -> None:
    """The flood's own process: the plan as JSON on stdin; phases and the report as JSON lines on stdout."""
    plan = FloodPlan(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(sys.stdin.read()).items()})

    def send(*message: Any) -> None:
        print(json.dumps(message), flush=True)
    # A flood that overruns its bound says where it was stuck (on stderr, which the parent reports).
    faulthandler.dump_traceback_later(max(1.0, plan.max_s - 0.5), exit=False)
    try:
        report = asyncio.run(asyncio.wait_for(run_plan(plan, send), plan.max_s))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        report = FloodReport(error=f"{type(exc).__name__}: {exc}"[:500])
    send("report", asdict(report))


class Flood:
    """``async with Flood(plan) as flood:`` runs ``plan`` in a process of its own (this file run as a
    script, which imports nothing but the standard library and rawclient, so it starts in a fraction
    of a second); ``flood.phase`` is the phase it is in now (None before the first), ``flood.done``
    whether it has reported, and ``await flood.report()`` waits (bounded by ``max_s``) for what it
    saw. The process is killed on exit, whatever happened."""

    def __init__(self, plan: FloodPlan) -> None:
        self.plan = plan
        self.phase: str | None = None
        self.phases: dict[str, float] = {}
        self._report: FloodReport | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def done(self) -> bool:
        return self._report is not None

    def phase_at(self, stamp: float) -> str | None:
        """The phase the flood was in at ``stamp`` (perf_counter), as the process announced them."""
        current = None
        for name, started in sorted(self.phases.items(), key=lambda kv: kv[1]):
            if started <= stamp:
                current = name
        return current

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for line in self._process.stdout:
            with contextlib.suppress(ValueError, IndexError, KeyError, TypeError):
                message = json.loads(line)
                if message[0] == "phase":
                    self.phase, self.phases[message[1]] = message[1], message[2]
                elif message[0] == "report":
                    self._report = FloodReport(phases=message[1]["phases"], error=message[1]["error"])
        if self._report is None:
            err = b""
            if self._process.stderr is not None:
                with contextlib.suppress(Exception):
                    err = await asyncio.wait_for(self._process.stderr.read(2000), 1.0)
            self._report = FloodReport(error="the flood process ended without a report: "
                                       + err.decode("utf-8", "replace")[-500:])

    async def __aenter__(self) -> "Flood":
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(asdict(self.plan)).encode())
        self._process.stdin.close()
        self._reader = asyncio.create_task(self._read())
        return self

    async def started(self, timeout: float = START_TIMEOUT_S) -> bool:
        """Whether the process announced its first phase within ``timeout`` (its interpreter's start-up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.phase is None and not self.done and loop.time() < deadline:
            await asyncio.sleep(0.01)  # polled: a phase is a line the reader task parses
        return self.phase is not None

    async def report(self) -> FloodReport:
        """What the flood did; a process past ``max_s`` (plus its start-up) is killed and said to be."""
        assert self._reader is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), self.plan.max_s + START_TIMEOUT_S)
        except asyncio.TimeoutError:
            self._kill()
            err = b""
            if self._process is not None and self._process.stderr is not None:
                with contextlib.suppress(Exception):
                    err = await asyncio.wait_for(self._process.stderr.read(20000), 2.0)
            self._report = FloodReport(error=f"the flood overran its bound ({self.plan.max_s:.0f} s) and was killed; "
                                       + err.decode("utf-8", "replace")[-6000:], killed=True)
        assert self._report is not None
        return self._report

    def _kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def __aexit__(self, *exc: object) -> None:
        if self._process is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._process.wait(), 2.0)
        self._kill()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._process.wait(), 5.0)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


if __name__ == "__main__":
    _main()
