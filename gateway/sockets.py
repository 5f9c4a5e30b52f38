"""The Socket.IO server: handshake authentication, the tenant room, token expiry.

A client is put in exactly one room, ``contract.room_for(tenant)``, chosen from
its verified token and nothing else: ``auth`` keys other than ``token`` and the
query string are ignored (AUTH-9, ISO-2), and there are no client event
handlers, so nothing a client emits can add rooms. A connection whose token
expires while connected is disconnected at ``exp`` (AUTH-8).

Emission never waits for a slow client: python-engineio gives every socket its
own unbounded send queue and writer task, so ``sio.emit`` to a room only
enqueues (FAULT-4).

Not provided: Socket.IO connection state recovery (RECON-4). python-socketio has
no implementation of the v4.6 recovery protocol (``pid``/offset replay), so a
client that reconnects gets only events published after it is back; the REST
endpoints are the catch-up path (REST-1).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Mapping

import socketio

from realtime_conformance import contract

from . import auth, cluster, origins, slowclients
from .config import Settings
from .logs import adopt, log


class HandshakeRefused(socketio.exceptions.ConnectionRefusedError):
    """A refusal whose CONNECT_ERROR packet carries a machine-readable code (AUTH-11).

    The packet data is ``{"message", "code", "data": {"code", "message"}}``: the
    JavaScript client exposes ``err.message`` and ``err.data.code``; a Python
    client's ``connect_error`` handler receives the whole dict.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.error_args = {"message": message, "code": code, "data": {"code": code, "message": message}}


def extract_token(auth_payload: Any, environ: Mapping[str, Any]) -> object:
    """The handshake token: ``auth.token`` only, never the query string. Patchable seam."""
    if isinstance(auth_payload, dict):
        return auth_payload.get("token")
    return None


def expiry_delay(claims: auth.Claims, now: float | None = None) -> float | None:
    """Seconds until the connection must end, or None when the token has no exp. Patchable seam."""
    if claims.exp is None:
        return None
    return max(0.0, claims.exp - (time.time() if now is None else now))


async def emit_event(sio: socketio.AsyncServer, tenant_id: str, event_type: str, data: Any) -> None:
    """Emit ``data`` as event ``event_type`` to the tenant's room. Every emit goes through here. Patchable seam."""
    await sio.emit(event_type, data, room=contract.room_for(tenant_id))


REFUSED_SESSION_GRACE = 5.0  # how long a refused client may take to read its CONNECT_ERROR before its session ends
MAX_PAYLOAD = 64 * 1024  # Engine.IO's maxPayload: the largest message a client may send (ROB-4)


def _close_engine_soon(sio: socketio.AsyncServer, sid: str) -> None:
    """End a refused client's Engine.IO session once its CONNECT_ERROR has been read.

    Nothing can happen on an unauthenticated session, and without this a polling
    client that leaves after a refusal keeps a long-poll open until ping timeout.
    Closing before the client has read the refusal loses it: a browser upgrading
    to WebSocket holds the queue until the upgrade ends, and a session closed
    meanwhile answers its next poll with 400, so socket.io-client sees a transport
    error instead of the refusal and retries blindly (seen in Chromium, AUTH-7).
    """
    eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
    if eio_sid is None:
        return

    def refusal_pending() -> bool:
        sock = sio.eio.sockets.get(eio_sid)
        if sock is None or sock.closed:
            return False  # gone, or the client closed it having read the refusal
        if sio.manager.sid_from_eio_sid(eio_sid, "/") is not None:
            return True  # python-socketio has not queued CONNECT_ERROR yet
        return sock.upgrading or not sock.queue.empty()

    async def close() -> None:
        # Bounded: a client that never reads its refusal loses its session at the deadline.
        deadline = asyncio.get_running_loop().time() + REFUSED_SESSION_GRACE
        while refusal_pending() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        if sio.manager.sid_from_eio_sid(eio_sid, "/") is not None:
            return  # not refused after all: leave the session alone
        sock = sio.eio.sockets.get(eio_sid)
        if sock is None:
            return
        if sock.closed:  # the client sent CLOSE: answer its pending long-poll now, not at ping timeout
            if not sock.upgraded:
                sock.queue.put_nowait(None)
            return
        await sio.eio.disconnect(eio_sid)

    asyncio.ensure_future(close())


def _release_long_poll(sio: socketio.AsyncServer, sid: str) -> None:
    """Answer a closed polling session's pending GET now instead of at ping timeout.

    python-engineio closes a polling socket on the client's CLOSE packet but
    leaves its long-poll GET waiting up to ping_interval + ping_timeout, which
    holds the client's disconnect (and a server connection) open that long.
    """
    eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
    sock = sio.eio.sockets.get(eio_sid) if eio_sid is not None else None
    if sock is None or sock.upgraded:
        return

    def release() -> None:
        if sock.closed:
            sock.queue.put_nowait(None)

    asyncio.get_running_loop().call_soon(release)


class ExpiryTimers:
    """One timer per connection that disconnects it at token expiry; cancelled on disconnect."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def schedule(self, sid: str, delay: float | None) -> None:
        if delay is None:
            return
        loop = asyncio.get_running_loop()
        self._timers[sid] = loop.call_later(delay, lambda: asyncio.ensure_future(self._expire(sid)))

    async def _expire(self, sid: str) -> None:
        self._timers.pop(sid, None)
        log("token expired, disconnecting", sid=sid)
        await self._sio.disconnect(sid)

    def cancel(self, sid: str) -> None:
        handle = self._timers.pop(sid, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()


def _client_event(sio: socketio.AsyncServer, sid: str) -> bool:
    """Whether a connect/disconnect handler was reached by a client event of that name.

    python-socketio dispatches ``42["connect", ...]`` and ``42["disconnect"]`` from a connected
    client to the handlers of those names. Its own calls happen while the sid is pending
    (connecting or disconnecting), when ``is_connected`` is False; a client's event arrives only
    on a fully connected sid."""
    return bool(sio.manager.is_connected(sid, "/"))


def create_server(settings: Settings) -> tuple[socketio.AsyncServer, ExpiryTimers]:
    """Build the AsyncServer with its connect/disconnect handlers (and nothing else)."""
    sio = socketio.AsyncServer(
        async_mode="asgi",
        # Cluster mode: emits to a room reach that room's clients on every instance.
        client_manager=cluster.client_manager(settings.redis_url) if settings.clustered else None,
        cors_allowed_origins=origins.engineio_policy(settings.allowed_origins),
        cors_credentials=True,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        max_http_buffer_size=MAX_PAYLOAD,
        logger=False,
        engineio_logger=False,
    )
    adopt("engineio.server", "socketio.server")
    slowclients.close_silent_sessions(sio, settings.connect_timeout)  # ROB-6: no CONNECT, no session
    timers = ExpiryTimers(sio)

    @sio.event
    async def connect(sid: str, environ: Any = None, auth_payload: Any = None) -> None:
        if _client_event(sio, sid):
            return  # a client EVENT named "connect" (ROB-1): python-socketio routes it to this handler
        token = extract_token(auth_payload, environ)
        try:
            claims = auth.verify_token(token, settings)
        except auth.AuthError as exc:
            log("handshake refused", level=logging.INFO, code=exc.code, reason=exc.message,
                remote=environ.get("REMOTE_ADDR"), origin=environ.get("HTTP_ORIGIN"))
            _close_engine_soon(sio, sid)
            raise HandshakeRefused(exc.code, exc.message) from None
        room = contract.room_for(claims.tenant_id)
        await sio.enter_room(sid, room)
        await sio.save_session(sid, {"tenant": claims.tenant_id, "exp": claims.exp})
        timers.schedule(sid, expiry_delay(claims))
        log("client connected", level=logging.DEBUG, sid=sid, tenant=claims.tenant_id)

    @sio.event
    async def disconnect(sid: str, reason: Any = None) -> None:
        if _client_event(sio, sid):
            return  # a client EVENT named "disconnect": it must not cancel the expiry timer (AUTH-8)
        timers.cancel(sid)
        _release_long_poll(sio, sid)
        log("client disconnected", level=logging.DEBUG, sid=sid, reason=str(reason))

    log("Socket.io initialized", origins=list(settings.allowed_origins),
        adapter="redis" if settings.clustered else "in-process",
        ping_interval=settings.ping_interval, ping_timeout=settings.ping_timeout)
    return sio, timers
