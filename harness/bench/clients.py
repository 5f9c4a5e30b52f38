"""Lean Socket.IO clients for the bench: many per process, cheap per delivery.

The conformance suites' ``TenantClient`` keeps a dataclass per event and teaches the client
connection state recovery; a bench client needs neither, only ``(event, payload, receive time)``.
python-engineio's client also starts one asyncio task per incoming message; at 10,000
deliveries a second that task churn is a large share of the harness's CPU, so the engine here
hands each message to Socket.IO inline, in arrival order, on the read loop itself (the handler
only appends to a list, so nothing waits behind it).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import engineio
import socketio
from engineio import packet as eio_packet


class InlineEngineIO(engineio.AsyncClient):
    """An Engine.IO client that delivers messages on its read loop instead of in a task each."""

    async def _receive_packet(self, pkt: eio_packet.Packet) -> None:
        if pkt.packet_type == eio_packet.MESSAGE:
            handler = self.handlers.get("message")
            if handler is not None:
                await handler(pkt.data)
            return
        await super()._receive_packet(pkt)


class InlineSocketIO(socketio.AsyncClient):
    """python-socketio's AsyncClient over ``InlineEngineIO``."""

    def _engineio_client_class(self) -> type:
        return InlineEngineIO


class BenchClient:
    """One tab: connects with a token, records what arrives as (event, payload, perf_counter())."""

    __slots__ = ("name", "tenant", "group", "received", "connected_at", "connect_started", "closed_at",
                 "error", "sio", "on_event")

    def __init__(self, name: str, tenant: str, token: str, on_event: Any = None) -> None:
        self.name, self.tenant, self.group = name, tenant, token
        self.received: list[tuple[str, Any, float]] = []
        self.connected_at: float | None = None
        self.connect_started: float | None = None
        self.closed_at: float | None = None
        self.error: str | None = None
        self.on_event = on_event
        self.sio = InlineSocketIO(reconnection=False, handle_sigint=False)
        self.sio.on("*", self._any)
        self.sio.on("connect_error", self._refused)

    async def _any(self, event: str, *args: Any) -> None:
        # A gateway with connection state recovery appends an offset: the payload is the first argument.
        self.received.append((event, args[0] if args else None, time.perf_counter()))
        if self.on_event is not None:
            self.on_event()

    async def _refused(self, data: Any = None) -> None:
        self.error = f"connect_error: {data!r}"

    async def connect(self, url: str, path: str, token: str, timeout: float) -> bool:
        """Connect over websocket; True once the CONNECT is acknowledged."""
        self.connect_started = time.perf_counter()
        try:
            await self.sio.connect(url, auth={"token": token}, transports=["websocket"], socketio_path=path,
                                   wait_timeout=timeout, retry=False)
        except (socketio.exceptions.ConnectionError, asyncio.TimeoutError, OSError, RuntimeError,
                aiohttp.ClientError) as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            return False
        if self.sio.connected:
            self.connected_at = time.perf_counter()
        return self.sio.connected

    @property
    def connected(self) -> bool:
        return self.sio.connected

    @property
    def connect_ms(self) -> float | None:
        if self.connect_started is None or self.connected_at is None:
            return None
        return (self.connected_at - self.connect_started) * 1000

    async def close(self) -> None:
        """Disconnect on purpose (bounded); nothing is expected after this."""
        if self.closed_at is None:
            self.closed_at = time.perf_counter()
        try:
            await asyncio.wait_for(self.sio.disconnect(), timeout=5)
        except (asyncio.TimeoutError, OSError, RuntimeError):
            pass
        http = getattr(self.sio.eio, "http", None)
        if http is not None and not http.closed:
            await http.close()


class WireClient:
    """One tab speaking Engine.IO 4 / Socket.IO 5 over one aiohttp websocket, nothing more.

    The same surface as ``BenchClient`` for a fraction of its cost per delivery: a text frame
    ``42[...]`` is one ``json.loads`` and one append; ``2`` (ping) is answered ``3``; everything
    else a bench needs is the CONNECT (``40`` with the auth, ``40{sid}`` or ``44{...}`` back).
    All clients share one aiohttp session (``session``), so a client costs a socket and a task.
    Used by default (``--bench-client wire``); ``--bench-client socketio`` uses python-socketio's.
    """

    __slots__ = ("name", "tenant", "group", "received", "connected_at", "connect_started", "closed_at",
                 "error", "on_event", "session", "_ws", "_reader", "_acked")

    def __init__(self, name: str, tenant: str, token: str, on_event: Any = None,
                 session: "aiohttp.ClientSession | None" = None) -> None:
        self.name, self.tenant, self.group = name, tenant, token
        self.received: list[tuple[str, Any, float]] = []
        self.connected_at: float | None = None
        self.connect_started: float | None = None
        self.closed_at: float | None = None
        self.error: str | None = None
        self.on_event = on_event
        self.session = session
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._acked: asyncio.Future[bool] | None = None

    async def connect(self, url: str, path: str, token: str, timeout: float) -> bool:
        """Open the websocket, send CONNECT with ``{"token": ...}``; True once acknowledged."""
        assert self.session is not None, "WireClient needs the shared aiohttp session"
        self.connect_started = time.perf_counter()
        target = f"{url.rstrip('/').replace('http', 'ws', 1)}{path}?EIO=4&transport=websocket"
        try:
            async with asyncio.timeout(timeout):
                self._ws = await self.session.ws_connect(target, autoping=True, max_msg_size=0)
                opened = await self._ws.receive()
                if opened.type != aiohttp.WSMsgType.TEXT or not str(opened.data).startswith("0"):
                    self.error = f"no Engine.IO open packet: {str(opened.data)[:100]!r}"
                    await self._ws.close()
                    return False
                self._acked = asyncio.get_running_loop().create_future()
                self._reader = asyncio.create_task(self._read())
                await self._ws.send_str("40" + json.dumps({"token": token}))
                ok = await self._acked
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            return False
        if ok:
            self.connected_at = time.perf_counter()
        return ok

    async def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        received, now = self.received, time.perf_counter
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            text: str = msg.data
            if text.startswith("42"):
                at = now()
                args = json.loads(text[text.index("["):])  # 42[...] or 42<ack id>[...]
                received.append((args[0], args[1] if len(args) > 1 else None, at))
                if self.on_event is not None:
                    self.on_event()
            elif text == "2":
                await ws.send_str("3")
            elif text.startswith("40"):
                self._settle(True)
            elif text.startswith("44"):
                self.error = f"connect_error: {text[2:][:200]}"
                self._settle(False)
            elif text.startswith(("41", "1")):
                break
        self._settle(False)

    def _settle(self, ok: bool) -> None:
        if self._acked is not None and not self._acked.done():
            self._acked.set_result(ok)

    @property
    def connected(self) -> bool:
        return self.connected_at is not None and self._ws is not None and not self._ws.closed

    @property
    def connect_ms(self) -> float | None:
        if self.connect_started is None or self.connected_at is None:
            return None
        return (self.connected_at - self.connect_started) * 1000

    async def close(self) -> None:
        """Send DISCONNECT and close (bounded); nothing is expected after this."""
        if self.closed_at is None:
            self.closed_at = time.perf_counter()
        ws = self._ws
        try:
            if ws is not None and not ws.closed:
                async with asyncio.timeout(5):
                    await ws.send_str("41")
                    await ws.close()
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError, RuntimeError):
            pass
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
