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
