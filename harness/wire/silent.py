"""ROB-6's slow and silent clients: held open on a gateway of their own while the other checks run.

A client that connects and says nothing costs the gateway a socket and memory for as long as
the gateway lets it; enough of them keep everyone else out. Whether the gateway lets them go
takes real time to see (its deadline: 30 to 60 s is usual), so, like MET-3's idle window, it
is evidence gathered in the background: a thread of its own, a dedicated gateway instance
(same command and configuration, a vhost of its own), started with the run. The ROB-6 test
collects it.

Five kinds of silent client, PER_KIND of each, all at once: a TCP connection that sends
nothing; one whose request head stops half-way; one that trickles its head a header line every
TRICKLE_S (an idle timeout never fires on it); a polling POST whose body never arrives in full;
an Engine.IO session over WebSocket that answers pings but never sends its Socket.IO CONNECT.
Each one's close is timed. While they are all open, new clients with valid tokens connect,
timed as CONN-3 times them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from realtime_conformance.harness.wire.background import BackgroundWatch
from realtime_conformance.harness.wire.rawclient import RawWebSocket, _address, http_request

if TYPE_CHECKING:
    from realtime_conformance.harness.providers.target import Instance, Target

PER_KIND = 10
FRESH_CONNECTS = 5
TRICKLE_S = 2.0
GRACE_S = 3.0  # how long past the bound a connection is watched before it is counted as never closed
KINDS = ("nothing sent", "request head cut short", "request head trickled", "request body never complete",
         "Engine.IO session without a CONNECT")


@dataclass
class SilentEvidence:
    """When each silent client was let go, and whether new clients got in meanwhile."""

    where: str
    bound_s: float
    closed_after_s: dict[str, list[float | None]] = field(default_factory=dict)  # None: still open at bound + grace
    not_opened: dict[str, str] = field(default_factory=dict)  # kind -> why it could not be set up
    baseline_connect_ms: list[float | None] = field(default_factory=list)  # before the silent clients
    fresh_connect_ms: list[float | None] = field(default_factory=list)  # while they were open (None: failed)
    elapsed_s: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """Per kind: how many, when the first and the last closed, how many were never closed."""
        out = {}
        for kind, times in self.closed_after_s.items():
            done = sorted(t for t in times if t is not None)
            out[kind] = {"opened": len(times), "closed": len(done), "never_closed": len(times) - len(done),
                         "first_closed_s": done[0] if done else None, "last_closed_s": done[-1] if done else None}
        return out


async def _until_eof(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Read (and drop) what comes until the server ends the connection (True) or time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            if not await asyncio.wait_for(reader.read(65536), max(0.01, deadline - loop.time())):
                return True
        except asyncio.TimeoutError:
            return False
        except (ConnectionError, OSError):
            return True
    return False


async def _silent_tcp(url: str, first: bytes, watch_s: float, trickle: bool = False) -> float | None:
    """One connection that sends ``first`` (and, trickling, a header line every TRICKLE_S) and
    never completes its request; seconds until the server closed it, None if it did not."""
    host, port = _address(url)
    started = time.monotonic()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
    try:
        if first:
            writer.write(first)

        async def trickled() -> None:
            n = 0
            while True:
                await asyncio.sleep(TRICKLE_S)  # the shape of the input, not a synchronisation
                writer.write(f"X-Slow-{n}: {n}\r\n".encode())
                n += 1
        feeder = asyncio.create_task(trickled()) if trickle else None
        try:
            closed = await _until_eof(reader, watch_s)
        finally:
            if feeder is not None:
                feeder.cancel()
        return round(time.monotonic() - started, 2) if closed else None
    finally:
        writer.transport.abort()


async def _polling_sid(url: str, path: str) -> str | None:
    got = await http_request(url, "GET", f"{path}?EIO=4&transport=polling", timeout=3.0)
    text = got.text
    if got.status == 200 and "0{" in text:
        with contextlib.suppress(ValueError):
            return json.loads(text[text.index("0{") + 1:].split("\x1e")[0]).get("sid")
    return None


async def _silent_session(url: str, path: str, watch_s: float) -> float | None:
    started = time.monotonic()
    ws = await RawWebSocket.open(url, path=path, timeout=5.0)
    try:
        closed = await ws.held_until_closed(watch_s)
        return round(time.monotonic() - started, 2) if closed else None
    finally:
        ws.abort()


async def _connect_ms(sc: Any, n: int) -> float | None:
    """Milliseconds until a new client with a valid token is connected (CONN-3's measure), None if never."""
    client = sc.client(sc.tenant(f"silent-fresh-{n}"))
    try:
        ok = await client.connect(timeout=5.0)
        return round(client.connect_latency * 1000, 1) if ok and client.connect_latency is not None else None
    finally:
        await client.close()


async def watch_silent_clients(instance: "Instance", bound_s: float, *, path: str, where: str) -> SilentEvidence:
    """Open the silent clients on ``instance``, time new connects meanwhile, time each close."""
    evidence = SilentEvidence(where=where, bound_s=bound_s)
    started = time.monotonic()
    url = instance.url
    watch_s = bound_s + GRACE_S
    head = f"GET {path}?EIO=4&transport=polling HTTP/1.1\r\nHost: {'%s:%d' % _address(url)}\r\n".encode()
    async with instance.scenario() as sc:
        evidence.baseline_connect_ms = [await _connect_ms(sc, n) for n in range(2)]
        sids = [await _polling_sid(url, path) for _ in range(PER_KIND)]
        makers: dict[str, Callable[[int], Awaitable[float | None]]] = {
            KINDS[0]: lambda n: _silent_tcp(url, b"", watch_s),
            KINDS[1]: lambda n: _silent_tcp(url, head, watch_s),
            KINDS[2]: lambda n: _silent_tcp(url, head, watch_s, trickle=True),
            KINDS[4]: lambda n: _silent_session(url, path, watch_s),
        }
        if all(sids):
            makers[KINDS[3]] = lambda n: _silent_tcp(url, (
                f"POST {path}?EIO=4&transport=polling&sid={sids[n]} HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: text/plain\r\nContent-Length: 4096\r\n\r\n4hello").encode(), watch_s)
        else:
            evidence.not_opened[KINDS[3]] = "no polling session could be opened to POST to (a websocket-only gateway?)"
        tasks = {kind: [asyncio.create_task(make(n)) for n in range(PER_KIND)] for kind, make in makers.items()}
        # While every silent client holds its connection: do new clients get in?
        await asyncio.sleep(0.5)  # the silent connections are being accepted: let them land first
        evidence.fresh_connect_ms = [await _connect_ms(sc, 10 + n) for n in range(FRESH_CONNECTS)]
        for kind, jobs in tasks.items():
            results = await asyncio.gather(*jobs, return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                evidence.not_opened[kind] = f"{len(failed)} of {len(results)} could not be opened: {failed[0]!r}"[:300]
            evidence.closed_after_s[kind] = [r for r in results if not isinstance(r, BaseException)]
    evidence.elapsed_s = round(time.monotonic() - started, 1)
    return evidence


class SilentWatch(BackgroundWatch[SilentEvidence]):
    """ROB-6's silent clients run in the background, on a dedicated gateway instance, from the start of the run."""

    what = "silent-client watch"
    cancelled = "the run ended before the silent clients' bound had passed"

    def __init__(self, target: "Target", bound_s: float, path: str) -> None:
        super().__init__(target, bound_s + GRACE_S)
        self.bound_s, self.path = bound_s, path

    async def _watch(self) -> SilentEvidence:
        async with self.target.dedicated("silent") as instance:
            return await watch_silent_clients(instance, self.bound_s, path=self.path,
                                              where="a dedicated gateway instance, while the other checks ran")

    def _failed(self, error: str) -> SilentEvidence:
        return SilentEvidence(where="a dedicated gateway instance", bound_s=self.bound_s, error=error)
