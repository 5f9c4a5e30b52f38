"""Tenant clients: real python-socketio connections that record everything they see.

Each client records every event with its receive time, every connect_error with
its data, and every connect and disconnect, so checks run over a history
instead of callbacks, and the report can show what a client actually saw.

``RecoveringClient`` teaches python-socketio's client what socket.io-client v4 does for
connection state recovery, which python-socketio lacks: a server with recovery on sends a
private session id (``pid``) in its CONNECT ack and appends an offset to every broadcast
event; the client keeps the last offset and sends ``{pid, offset, ...auth}`` when it
connects again; the server then replays what was missed, before its CONNECT ack.
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
class RecoverySession:
    """What socket.io-client v4 keeps across reconnects of one socket: its ``pid`` and last offset."""

    pid: str | None = None
    offset: str | None = None
    # socket.io-client's receiveBuffer: events that arrived before a CONNECT ack which never came
    # (a refusal, or the transport closing first). It is not emptied then; the next accepted
    # connect of the same socket hands them to the app, ahead of that connect's own events.
    unshown: list[tuple[str | None, Any, list[Any]]] = field(default_factory=list)

    def auth(self, auth: Any) -> Any:
        """The CONNECT payload socket.io-client sends: ``{pid, offset, ...auth}`` once a pid is known.

        As there, the auth's own keys win, and an offset is sent only once one was seen.
        """
        if self.pid is None or not (auth is None or isinstance(auth, Mapping)):
            return auth
        session: dict[str, Any] = {"pid": self.pid}
        if self.offset is not None:
            session["offset"] = self.offset
        return {**session, **dict(auth or {})}


@dataclass
class Withheld:
    """An event that arrived before a CONNECT ack that never came (the connect was refused).

    socket.io-client buffers events that arrive before the CONNECT ack; a refusal does not show
    them to the application (though the socket's next accepted connect does: see
    ``RecoverySession.unshown``). They crossed the wire, which is what an authentication check
    must see.
    """

    event: str
    args: list[Any]
    at: float  # perf_counter()


class RecoveringClient(socketio.AsyncClient):
    """python-socketio's AsyncClient with socket.io-client v4's connection state recovery.

    * the CONNECT ack's ``pid`` is kept in ``session``; ``recovered`` is true when the server
      acknowledged the pid this client presented (socket.io-client's ``socket.recovered``);
    * while a pid is known, a trailing string argument of an event of two or more arguments is the
      server's offset: it is stripped, so handlers see the payload alone, and kept. (An event with
      no payload or with a string payload sent without offset is left alone: the two cannot be told
      apart on the wire, and the contract's events all carry an object.);
    * events that arrive before the CONNECT ack (a recovery's replay) are held and handed to the
      handlers right after the ack, as socket.io-client does; if the connect is refused instead,
      they go to ``withheld`` and, as socket.io-client keeps them too, to the session's ``unshown``,
      which the next accepted connect hands over first (so a resume refused after its replay and
      then accepted with a fresh token shows the replay twice, as the real client does);
    * ``connect`` sends ``{pid, offset, ...auth}`` when a pid is known.
    """

    def __init__(self, *args: Any, session: RecoverySession | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session = session if session is not None else RecoverySession()
        self.recovered = False
        self.presented_pid: str | None = None
        self.withheld: list[Withheld] = []
        self._early: list[tuple[str, Any, list[Any]]] = []

    async def connect(self, url: Any, headers: Any = {}, auth: Any = None, *args: Any, **kwargs: Any) -> None:  # noqa: B006 - python-socketio's signature
        self.recovered = False
        self._early = []

        def connect_payload() -> Any:
            # Computed at send time, as socket.io-client does, so the latest offset goes out.
            base = auth() if callable(auth) else auth
            self.presented_pid = self.session.pid
            return self.session.auth(base)

        await super().connect(url, headers, connect_payload, *args, **kwargs)

    def _strip_offset(self, data: list[Any]) -> list[Any]:
        if (self.session.pid is not None or self.presented_pid is not None) and len(data) >= 3 \
                and isinstance(data[-1], str):
            return data[:-1]
        return data

    async def _handle_connect(self, namespace: str | None, data: Any) -> None:
        pid = data.get("pid") if isinstance(data, Mapping) else None
        self.recovered = bool(pid) and pid == self.presented_pid
        self.session.pid = pid if isinstance(pid, str) else None
        early, self._early = [*self.session.unshown, *self._early], []
        self.session.unshown = []
        for ns, ack_id, args in early:
            await self._deliver(ns, ack_id, args)
        await super()._handle_connect(namespace, data)

    async def _handle_event(self, namespace: str | None, id: Any, data: list[Any]) -> None:
        if (namespace or "/") not in self.namespaces:
            self._early.append((namespace, id, list(data)))
            return
        await self._deliver(namespace, id, list(data))

    async def _deliver(self, namespace: str | None, id: Any, data: list[Any]) -> None:
        stripped = self._strip_offset(data)
        if stripped is not data:
            self.session.offset = data[-1]
        await super()._handle_event(namespace, id, stripped)

    async def _handle_error(self, namespace: str | None, data: Any) -> None:
        now = time.perf_counter()
        for _ns, _id, args in self._early:
            args = self._strip_offset(args)
            self.withheld.append(Withheld(str(args[0]) if args else "", list(args[1:]), now))
        self.session.unshown.extend(self._early)
        self._early = []
        await super()._handle_error(namespace, data)

    async def _handle_eio_disconnect(self, reason: Any = None) -> None:
        self.session.unshown.extend(self._early)
        self._early = []
        await super()._handle_eio_disconnect(reason)


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
        """The refusal's data.code as socket.io-client v4 shows it (``err.data.code``: the
        CONNECT_ERROR payload's ``data.code``), else a ``code`` at the payload's top level."""
        if not isinstance(self.data, dict):
            return None
        inner = self.data.get("data")
        if isinstance(inner, dict) and isinstance(inner.get("code"), str):
            return inner["code"]
        return self.data.get("code")


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
        self.sio = RecoveringClient(reconnection=False, handle_sigint=False)
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
    def recovered(self) -> bool:
        """Whether the last connect resumed the previous session (connection state recovery)."""
        return self.sio.recovered

    @property
    def recovery(self) -> RecoverySession:
        """The session id and last offset the gateway gave this client (both None without recovery)."""
        return self.sio.session

    @property
    def withheld(self) -> list[Withheld]:
        """Events that reached this client before a refused connect's refusal."""
        return self.sio.withheld

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
