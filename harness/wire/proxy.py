"""A loopback TCP proxy that injects network faults on command.

The harness puts one between Socket.IO clients and the gateway, or between the
gateway and RabbitMQ, so RECON-2 and FAULT-1..4 can cut, partition, slow down
or reset a link without touching either endpoint, and a report can show when
each fault began (``events``).

Modes, switchable at any time:

* ``pass_through()``: forward bytes both ways.
* ``cut()``: close every open connection now; new ones are accepted and closed
  at once (what a client sees of a peer that went away).
* ``blackhole()``: a silent partition. Connections stay open, bytes read from
  either side are dropped, EOF does not cross. New connections are accepted
  and never reach the target. A TCP stream cannot survive a hole, so when the
  mode changes again every connection that lost bytes or a side is closed;
  the untouched ones carry on.
* ``latency(s)``: each chunk is delivered ``s`` seconds after it was read, in
  both directions, order preserved.
* ``stall()``: stop reading either side. Nothing is lost: the endpoints'
  writes back up in the kernel buffers, as with a peer that stopped reading
  (FAULT-4's stalled client). Leaving the mode resumes the flow.
* ``reset()``: abort every open connection with RST (SO_LINGER 0) once, then
  pass through.
* ``refuse()``: stop listening, so a new connection is refused (ECONNREFUSED);
  open connections are closed. Leaving the mode listens again on the same port.
* ``hold_deliveries()`` (a proxy made with ``amqp=True``, in front of a broker):
  everything flows, connection handshakes and consumer registration included,
  but from the broker's first Basic.Deliver frame on, what the broker sends a
  connection waits in the proxy until the mode changes. Nothing is lost and no
  connection attempt fails: the gateway consumes, it just receives no message yet.

With several targets (``FaultProxy.balancing``) it is also the load balancer in front of a
gateway's instances: each new connection goes to one target, the next in turn
(``round-robin``) or the first that accepts (``failover``: sticky, a client stays on its
instance while it lives); a target that refuses is skipped, so clients of a dead instance
reach another one.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from types import TracebackType
from typing import Callable

from realtime_conformance.harness.providers.ports import LOOPBACK

_CHUNK = 65536
_QUEUE_CHUNKS = 64  # bounded so a slow reader pushes back on the sender
_PASS, _CUT, _BLACKHOLE, _LATENCY, _STALL = "pass_through", "cut", "blackhole", "latency", "stall"
_REFUSE, _HOLD = "refuse", "hold_deliveries"
_BASIC_DELIVER = b"\x00\x3c\x00\x3c"  # AMQP 0-9-1 method frame payload: class 60 (basic), method 60 (deliver)


class AmqpFrames:
    """Frame boundaries of the byte stream a RabbitMQ broker sends one connection (AMQP 0-9-1:
    type, channel, size, payload, 0xCE), so a hold can stop right before a Basic.Deliver frame."""

    def __init__(self) -> None:
        self.skip = 0  # bytes left of the current frame
        self.head = b""  # the start of a frame header not yet complete
        self.head_sent = False  # whether ``head`` was already forwarded

    def take(self, data: bytes, *, hold: bool) -> tuple[bytes, bytes]:
        """Split ``data`` into what may be forwarded now and what must wait: with ``hold``, from the
        first Basic.Deliver frame on. Undecided header bytes wait only while holding."""
        sent_before = len(self.head) if self.head_sent else 0
        buf, self.head, self.head_sent = self.head + data, b"", False
        i = 0
        while i < len(buf):
            if self.skip:
                step = min(self.skip, len(buf) - i)
                i, self.skip = i + step, self.skip - step
                continue
            header = buf[i:i + 11]
            if len(header) < 7 or (header[0] == 1 and len(header) < 11):
                self.head = buf[i:]  # a header cut by the chunk boundary
                if hold:
                    return buf[sent_before:i], b""
                self.head_sent = True
                return buf[sent_before:], b""
            if hold and header[0] == 1 and header[7:11] == _BASIC_DELIVER:
                return buf[sent_before:i], buf[i:]
            self.skip = 7 + int.from_bytes(header[3:7], "big") + 1
        return buf[sent_before:], b""


class _Conn:
    """One proxied connection: the client side and (unless blackholed at accept) the target side."""

    def __init__(self, cid: int, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.cid = cid
        self.client_reader, self.client_writer = client
        self.up_reader: asyncio.StreamReader | None = None
        self.up_writer: asyncio.StreamWriter | None = None
        self.damaged = False  # lost bytes or a side: cannot be resumed
        self.target: tuple[str, int] | None = None  # which target it reached
        self.closed = asyncio.Event()
        self.frames = AmqpFrames()  # used only by a proxy in front of a broker

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client_writer, self.up_writer) if w is not None]

    def close(self, rst: bool = False) -> None:
        """Close both sides now (FIN, or RST when ``rst``)."""
        for writer in self.writers():
            if rst:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
            writer.transport.abort()
        self.closed.set()


class FaultProxy:
    """TCP proxy from 127.0.0.1:<port> to (target_host, target_port) with switchable faults."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        port: int = 0,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        amqp: bool = False,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.targets: list[tuple[str, int]] = [(target_host, target_port)]
        self.policy = "failover"
        self._rotation = 0
        self.connections_by_target: dict[tuple[str, int], int] = {}
        self._requested_port = port
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._mode = _PASS
        self._latency = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._amqp = amqp  # parse the target's frames (for hold_deliveries)
        self._released = asyncio.Event()
        self._released.set()
        self._relisten: asyncio.Task[None] | None = None
        self._conns: dict[int, _Conn] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._next_id = 0
        self._changed = asyncio.Event()
        self.connections_total = 0
        self.refused_total = 0
        self.upstream_failures = 0
        self.bytes_to_target = 0
        self.bytes_to_client = 0
        self.bytes_dropped = 0
        self.events: list[tuple[float, str]] = []

    @classmethod
    def balancing(cls, targets: "list[tuple[str, int]]", *, policy: str = "round-robin", **kwargs: object) -> "FaultProxy":
        """A proxy in front of several targets: ``round-robin`` spreads new connections over them,
        ``failover`` sends each to the first that accepts (in the order given)."""
        if not targets or policy not in ("round-robin", "failover"):
            raise ValueError("balancing needs at least one target and policy 'round-robin' or 'failover'")
        proxy = cls(targets[0][0], targets[0][1], **kwargs)  # type: ignore[arg-type]
        proxy.targets = list(targets)
        proxy.policy = policy
        return proxy

    def target_of_open(self) -> list[tuple[str, int]]:
        """The target of each open connection (where the proxy's clients are right now)."""
        return [c.target for c in self._conns.values() if c.target is not None]

    def _candidates(self) -> list[tuple[str, int]]:
        """The targets to try for a new connection, in order."""
        if self.policy == "failover" or len(self.targets) == 1:
            return list(self.targets)
        start = self._rotation % len(self.targets)
        self._rotation += 1
        return self.targets[start:] + self.targets[:start]

    # lifecycle -----------------------------------------------------------

    async def start(self) -> "FaultProxy":
        """Listen on loopback; bind to port 0 unless a port was asked for."""
        self._server = await asyncio.start_server(self._on_accept, LOOPBACK, self._requested_port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._log("start -> " + ", ".join(f"{h}:{p}" for h, p in self.targets)
                  + (f" ({self.policy})" if len(self.targets) > 1 else ""))
        return self

    async def close(self) -> None:
        """Stop listening, close every connection, and wait for every handler to end."""
        if self._relisten is not None:
            await asyncio.gather(self._relisten, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns.values()):
            conn.close()
        self._flowing.set()
        self._released.set()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=5.0)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            except asyncio.TimeoutError:
                pass
            self._server = None
            self._log("close")

    async def __aenter__(self) -> "FaultProxy":
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FaultProxy not started")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    def url_for(self, scheme: str = "http") -> str:
        """The proxy's address as a URL, e.g. to hand to a client instead of the gateway's."""
        return f"{scheme}://{LOOPBACK}:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    # modes ---------------------------------------------------------------

    def pass_through(self) -> None:
        """Forward everything again."""
        self._set_mode(_PASS, "pass_through")

    def cut(self) -> None:
        """Close every open connection and refuse new ones until the mode changes."""
        n = len(self._conns)
        self._set_mode(_CUT, f"cut ({n} open closed)")
        for conn in list(self._conns.values()):
            conn.close()

    def blackhole(self) -> None:
        """Silent partition: keep connections, drop every byte both ways."""
        self._set_mode(_BLACKHOLE, "blackhole")

    def latency(self, seconds: float) -> None:
        """Delay every forwarded chunk by ``seconds`` in both directions."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        self._latency = float(seconds)
        self._set_mode(_LATENCY, f"latency {seconds:g}s")

    def stall(self) -> None:
        """Stop reading both sides so the endpoints' writes back up (nothing lost)."""
        self._set_mode(_STALL, "stall")

    def reset(self) -> None:
        """Abort every open connection with RST once, then pass through."""
        n = len(self._conns)
        self._set_mode(_PASS, f"reset ({n} open aborted with RST)")
        for conn in list(self._conns.values()):
            conn.close(rst=True)

    def refuse(self) -> None:
        """Stop listening: new connections are refused by the kernel; open ones are closed."""
        n = len(self._conns)
        self._set_mode(_REFUSE, f"refuse ({n} open closed)")
        for conn in list(self._conns.values()):
            conn.close()
        if self._server is not None:
            self._server.close()

    def _listen_again(self) -> None:
        """Listen on the same port again, at once: the kernel queues connections from this call on."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, self.port))
        sock.listen(128)
        sock.setblocking(False)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._on_accept, sock=sock)
        self._relisten = asyncio.get_running_loop().create_task(serve())

    def hold_deliveries(self) -> None:
        """Let connections and consumers form, but hold what the broker sends from its first
        Basic.Deliver on, until the mode changes (needs ``amqp=True``)."""
        if not self._amqp:
            raise ValueError("hold_deliveries() needs a proxy made with amqp=True (in front of a broker)")
        self._set_mode(_HOLD, "hold deliveries")

    def _set_mode(self, mode: str, label: str) -> None:
        leaving_blackhole = self._mode == _BLACKHOLE and mode != _BLACKHOLE
        if self._mode == _REFUSE and mode != _REFUSE:
            self._listen_again()
        if mode == _HOLD:
            self._released.clear()
        else:
            self._released.set()
        self._mode = mode
        if mode != _LATENCY:
            self._latency = 0.0
        if mode == _STALL:
            self._flowing.clear()
        else:
            self._flowing.set()
        self._log(label)
        if leaving_blackhole:
            for conn in list(self._conns.values()):
                if conn.damaged:
                    conn.close()

    def _log(self, label: str) -> None:
        self.events.append((self._clock(), label))

    # waiting -------------------------------------------------------------

    async def wait_for_connections(self, n: int, timeout: float) -> None:
        """Wait until at least ``n`` connections are open; TimeoutError after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self._conns) < n:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{len(self._conns)} of {n} connections open after {timeout:g} s")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # forwarding ----------------------------------------------------------

    async def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._mode == _CUT or self._server is None:
            self.refused_total += 1
            writer.transport.abort()
            return
        self._next_id += 1
        conn = _Conn(self._next_id, (reader, writer))
        if self._mode == _BLACKHOLE:
            conn.damaged = True  # never reached the target: cannot resume
        else:
            for target in self._candidates():  # bounded: each target once
                try:
                    conn.up_reader, conn.up_writer = await asyncio.wait_for(
                        asyncio.open_connection(*target), self._connect_timeout
                    )
                except (OSError, asyncio.TimeoutError):
                    self.upstream_failures += 1
                    continue
                conn.target = target
                self.connections_by_target[target] = self.connections_by_target.get(target, 0) + 1
                break
            if conn.up_writer is None:
                writer.transport.abort()
                return
        self.connections_total += 1
        self._conns[conn.cid] = conn
        self._notify()
        try:
            pumps = [asyncio.create_task(self._pump(conn, reader, conn.up_writer, to_target=True))]
            if conn.up_reader is not None:
                pumps.append(asyncio.create_task(self._pump(conn, conn.up_reader, writer, to_target=False)))
            closed = asyncio.create_task(conn.closed.wait())
            try:
                await asyncio.wait([*pumps, closed], return_when=asyncio.FIRST_COMPLETED)
                if not conn.closed.is_set():
                    # one direction ended (EOF or error outside blackhole): wait for
                    # the close it triggered, or for the other side in blackhole
                    await conn.closed.wait()
            finally:
                for task in (*pumps, closed):
                    task.cancel()
                await asyncio.gather(*pumps, closed, return_exceptions=True)
        finally:
            conn.close()
            self._conns.pop(conn.cid, None)
            self._notify()

    async def _pump(
        self,
        conn: _Conn,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter | None,
        *,
        to_target: bool,
    ) -> None:
        """Copy one direction through a bounded queue (reader task + delayed writer task)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=_QUEUE_CHUNKS)

        async def read() -> None:
            while True:
                await self._flowing.wait()
                try:
                    data = await src.read(_CHUNK)
                except (ConnectionError, OSError):
                    data = b""
                await self._flowing.wait()  # a read already pending when stall() began is held here
                if self._mode == _BLACKHOLE:
                    conn.damaged = True
                    if not data:
                        # this side went away; in a partition nobody else hears of it
                        return
                    self.bytes_dropped += len(data)
                    continue
                if not data:
                    await queue.put(None)
                    return
                await queue.put((loop.time() + self._latency, data))

        async def write() -> None:
            while True:
                item = await queue.get()
                if item is None or dst is None:
                    conn.close()
                    return
                due, data = item
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # the injected latency itself
                await self._flowing.wait()
                if self._mode == _BLACKHOLE:
                    conn.damaged = True
                    self.bytes_dropped += len(data)
                    continue
                held, size = b"", len(data)
                if self._amqp and not to_target:
                    data, held = conn.frames.take(data, hold=self._mode == _HOLD)
                try:
                    dst.write(data)
                    await dst.drain()
                    if held:  # a Basic.Deliver and what follows it wait for the hold to end
                        await self._released.wait()
                        data, _ = conn.frames.take(held, hold=False)
                        dst.write(data)
                        await dst.drain()
                except (ConnectionError, OSError):
                    conn.close()
                    return
                if to_target:
                    self.bytes_to_target += size
                else:
                    self.bytes_to_client += size

        reader = asyncio.create_task(read())
        writer = asyncio.create_task(write())
        try:
            await asyncio.gather(reader, writer)
        finally:
            reader.cancel()
            writer.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
