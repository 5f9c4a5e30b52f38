"""Tenant clients: real python-socketio connections that record everything they see.

Each client records every event with its receive time, every connect_error with
its data, and every connect and disconnect, so checks run over a history
instead of callbacks, and the report can show what a client actually saw.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import aiohttp
import socketio

from realtime_conformance.harness.wire.waits import wait_until


@dataclass
class Received:
    event: str
    data: Any
    at: float  # perf_counter()


@dataclass
class ConnectError:
    data: Any
    at: float

    @property
    def code(self) -> str | None:
        return self.data.get("code") if isinstance(self.data, dict) else None


@dataclass
class TenantClient:
    """One tab of one tenant's agent: a Socket.IO client with a token in ``auth.token``."""

    name: str
    tenant: str
    url: str
    token: str | Callable[[], str] | None
    transports: Sequence[str] = ("websocket",)
    socketio_path: str = "/socket.io/"
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: Mapping[str, Any] | None = None  # overrides the {"token": ...} auth when given
    query: str = ""
    received: list[Received] = field(default_factory=list)
    connect_errors: list[ConnectError] = field(default_factory=list)
    connected_at: list[float] = field(default_factory=list)
    disconnected_at: list[tuple[float, Any]] = field(default_factory=list)
    closed_at: float | None = None
    connect_started: float | None = None
    transport_errors: list[str] = field(default_factory=list)
    on_event: Callable[["TenantClient", Received], None] | None = None

    def __post_init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self._changed = asyncio.Event()
        self.sio.on("connect", self._on_connect)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_any)

    # -- handlers -------------------------------------------------------
    async def _on_connect(self) -> None:
        self.connected_at.append(time.perf_counter())
        self._poke()

    async def _on_connect_error(self, data: Any = None) -> None:
        self.connect_errors.append(ConnectError(data, time.perf_counter()))
        self._poke()

    async def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnected_at.append((time.perf_counter(), reason))
        self._poke()

    async def _on_any(self, event: str, *args: Any) -> None:
        item = Received(event, args[0] if len(args) == 1 else list(args), time.perf_counter())
        self.received.append(item)
        if self.on_event is not None:
            self.on_event(self, item)
        self._poke()

    def _poke(self) -> None:
        self._changed.set()

    # -- actions --------------------------------------------------------
    def _auth(self) -> Mapping[str, Any] | None:
        if self.auth is not None:
            return dict(self.auth)
        token = self.token() if callable(self.token) else self.token
        return {"token": token} if token is not None else None

    async def connect(self, timeout: float = 5.0) -> bool:
        """Connect once; True if the CONNECT was acknowledged, False if refused or timed out."""
        url = self.url + (("?" + self.query) if self.query else "")
        self.connect_started = time.perf_counter()
        try:
            await self.sio.connect(
                url,
                auth=self._auth(),
                headers=dict(self.headers),
                transports=list(self.transports),
                socketio_path=self.socketio_path,
                wait_timeout=timeout,
                retry=False,
            )
        except (socketio.exceptions.ConnectionError, asyncio.TimeoutError, OSError, RuntimeError,
                aiohttp.ClientError) as exc:
            # A refused polling handshake can surface as aiohttp's RuntimeError: still a refusal.
            self.transport_errors.append(f"{type(exc).__name__}: {exc}")
            return False
        return self.sio.connected

    @property
    def connected(self) -> bool:
        return self.sio.connected

    @property
    def transport(self) -> str | None:
        return self.sio.transport() if self.sio.connected else None

    @property
    def connect_latency(self) -> float | None:
        if self.connect_started is None or not self.connected_at:
            return None
        return self.connected_at[-1] - self.connect_started

    async def emit(self, event: str, data: Any = None) -> None:
        await self.sio.emit(event, data)

    async def close(self) -> None:
        """Disconnect on purpose; deliveries are no longer expected after this time."""
        if self.closed_at is None:
            self.closed_at = time.perf_counter()
        try:
            await asyncio.wait_for(self.sio.disconnect(), timeout=5)
        except (asyncio.TimeoutError, OSError, RuntimeError):
            pass
        http = getattr(self.sio.eio, "http", None)  # a refused client keeps its HTTP session open
        if http is not None and not http.closed:
            await http.close()

    async def wait_for(self, predicate: Callable[["TenantClient"], bool], timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds, re-checked at every recorded change; bounded."""
        return await wait_until(self._changed, lambda: predicate(self), timeout)

    def events_named(self, name: str) -> list[Received]:
        return [r for r in self.received if r.event == name]
