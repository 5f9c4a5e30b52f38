"""Slow and silent clients are let go (ROB-6).

Two kinds of client hold a connection without ever becoming a user, and neither uvicorn nor
python-socketio ends them by itself: a TCP connection whose HTTP request never completes
(nothing sent, a head trickled a line at a time, a body that never arrives in full: the
slowloris class), and an Engine.IO session that answers pings but never sends its Socket.IO
CONNECT (socket.io in Node closes it after ``connectTimeout``; python-socketio never does).
Each one costs a file descriptor and memory for as long as the client likes; enough of them
keep everyone else out. Here each has a deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import socketio

from .logs import log


def bounded_http(base: type, timeout_s: float) -> type:
    """uvicorn's HTTP protocol class ``base`` (h11 or httptools), with a deadline for each request:
    from the connection's start, or the end of the previous response, the request's head and
    body must have arrived within ``timeout_s``, or the connection is closed. Data trickling in
    does not move the deadline (that is how a slowloris client keeps an idle timeout away)."""

    class BoundedRequest(base):  # type: ignore[misc, valid-type]
        _request_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_request_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_request_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._request_deadline is not None:
                self._request_deadline.cancel()
            super().connection_lost(exc)

        def _arm_request_deadline(self) -> None:
            if self._request_deadline is not None:
                self._request_deadline.cancel()
            self._request_deadline = asyncio.get_running_loop().call_later(timeout_s, self._request_overdue)

        def _request_overdue(self) -> None:
            self._request_deadline = None
            transport = self.transport
            if transport.is_closing() or transport.get_protocol() is not self:
                return  # closed already, or handed over to the WebSocket protocol
            cycle = getattr(self, "cycle", None)
            waiting_for_head = cycle is None or cycle.response_complete
            if waiting_for_head or getattr(cycle, "more_body", False):
                log("closed a connection whose HTTP request did not arrive in time", level=logging.DEBUG,
                    client=str(getattr(self, "client", "")), timeout_s=timeout_s)
                transport.close()

    BoundedRequest.__name__ = BoundedRequest.__qualname__ = f"Bounded{base.__name__}"
    return BoundedRequest


def close_silent_sessions(sio: socketio.AsyncServer, timeout_s: float) -> None:
    """End each Engine.IO session that has not connected to the main namespace within ``timeout_s``
    (socket.io's ``connectTimeout``). A refused CONNECT is closed sooner (sockets.py)."""
    deadlines: dict[str, asyncio.TimerHandle] = {}
    on_connect, on_disconnect = sio.eio.handlers["connect"], sio.eio.handlers["disconnect"]

    async def check(eio_sid: str) -> None:
        deadlines.pop(eio_sid, None)
        if eio_sid in sio.eio.sockets and sio.manager.sid_from_eio_sid(eio_sid, "/") is None:
            log("closed an Engine.IO session that sent no CONNECT in time", level=logging.DEBUG, timeout_s=timeout_s)
            await sio.eio.disconnect(eio_sid)

    async def connected(eio_sid: str, environ: Any, *args: Any) -> Any:
        result = await on_connect(eio_sid, environ, *args)
        if result is not False:
            loop = asyncio.get_running_loop()
            deadlines[eio_sid] = loop.call_later(timeout_s, lambda: asyncio.ensure_future(check(eio_sid)))
        return result

    async def disconnected(eio_sid: str, *args: Any) -> Any:
        handle = deadlines.pop(eio_sid, None)
        if handle is not None:
            handle.cancel()  # nothing kept for a session that is gone
        return await on_disconnect(eio_sid, *args)

    sio.eio.on("connect", connected)
    sio.eio.on("disconnect", disconnected)
