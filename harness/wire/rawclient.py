"""A raw client on asyncio streams, for inputs no well-behaved client library will send.

The bench's clients speak valid Engine.IO. Robustness checks need the opposite: HTTP requests
with bad or missing parameters, bodies shorter than their Content-Length, connections reset in
the middle of a request, and WebSocket frames that break RFC 6455 (reserved bits, unknown
opcodes, fragmented control frames, invalid UTF-8). Everything here is built by hand from bytes,
client frames are masked as RFC 6455 requires, and every read is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

DEFAULT_TIMEOUT_S = 3.0
MAX_READ = 1 << 20  # what a response or a frame may hold before the client stops reading

# WebSocket opcodes (RFC 6455 section 5.2); 0x3-0x7 and 0xB-0xF are reserved.
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "ws") or not parts.hostname:
        raise ValueError(f"raw client: {url!r} is not a plain http:// URL with a host (TLS is not supported here)")
    return parts.hostname, parts.port or 80


async def _open(url: str, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = _address(url)
    return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a client that crashes or a middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class RawResponse:
    """What came back for raw bytes: a parsed HTTP response, or how the connection ended."""

    status: int | None = None
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    closed: bool = False  # the server closed (or reset) the connection
    timed_out: bool = False  # nothing complete arrived within the timeout
    error: str = ""  # how the connection failed, if it did

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def describe(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status} {self.reason}".strip()
        if self.error:
            return f"connection ended ({self.error})"
        return "connection closed without an answer" if self.closed else "no answer within the timeout"


async def _read_response(reader: asyncio.StreamReader, timeout: float) -> RawResponse:
    """One HTTP/1.1 response (by Content-Length, chunked, or to the close), bounded."""
    out = RawResponse()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def left() -> float:
        return max(0.01, deadline - loop.time())

    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), left())
    except asyncio.IncompleteReadError as exc:
        out.closed = True
        if exc.partial:
            out.error = f"incomplete response head: {exc.partial[:200]!r}"
        return out
    except asyncio.LimitOverrunError:
        out.error = "response head too large"
        return out
    except asyncio.TimeoutError:
        out.timed_out = True
        return out
    except (ConnectionError, OSError) as exc:
        out.closed, out.error = True, type(exc).__name__
        return out
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    try:
        out.status = int(parts[1])
    except (IndexError, ValueError):
        out.error = f"not an HTTP status line: {lines[0][:200]!r}"
        return out
    out.reason = parts[2] if len(parts) > 2 else ""
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out.headers[name.strip().lower()] = value.strip()
    if out.status == 101 or out.status == 204 or out.status == 304:
        return out
    try:
        if "content-length" in out.headers:
            size = min(int(out.headers["content-length"]), MAX_READ)
            out.body = await asyncio.wait_for(reader.readexactly(size), left())
        elif out.headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while len(body) < MAX_READ:
                size = int((await asyncio.wait_for(reader.readline(), left())).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                body += await asyncio.wait_for(reader.readexactly(size + 2), left())
                del body[-2:]
            out.body = bytes(body)
        else:
            out.body = await asyncio.wait_for(reader.read(MAX_READ), left())
    except asyncio.IncompleteReadError as exc:
        out.body, out.closed = exc.partial, True
    except asyncio.TimeoutError:
        out.timed_out = True
    except (ConnectionError, OSError, ValueError) as exc:
        out.closed, out.error = True, type(exc).__name__
    return out


RESET_PAUSE_S = 0.2  # a client that stalls mid-request, then resets: the server has read what came first


async def send_raw(url: str, data: bytes, *, then_reset: bool = False, read: bool = True,
                   timeout: float = DEFAULT_TIMEOUT_S, reset_pause_s: float = RESET_PAUSE_S) -> RawResponse:
    """Send ``data`` as is on a fresh connection; then reset it (``then_reset``, after
    ``reset_pause_s``: the input's shape, so the server holds the partial request when the RST
    lands, as a stalled client's would) or read one response. Whatever the server does
    (answers, closes, resets, hangs) is returned, never raised."""
    try:
        reader, writer = await _open(url, timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return RawResponse(closed=True, error=f"cannot connect: {type(exc).__name__}")
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.drain(), timeout)
        if then_reset:
            await asyncio.sleep(reset_pause_s)
            reset(writer)
            return RawResponse(closed=True, error="reset by the client")
        return await _read_response(reader, timeout) if read else RawResponse()
    finally:
        writer.transport.abort() if then_reset else writer.close()


def http_request_bytes(method: str, target: str, *, host: str = "localhost", headers: Mapping[str, str] | None = None,
                       body: bytes = b"", content_length: int | None = None) -> bytes:
    """An HTTP/1.1 request as bytes; ``content_length`` may lie about ``body`` (a truncated body)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    given = {k.lower() for k in (headers or {})}
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if (body or content_length is not None) and "content-length" not in given:
        lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    if "connection" not in given:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def http_request(url: str, method: str, target: str, *, headers: Mapping[str, str] | None = None,
                       body: bytes = b"", content_length: int | None = None, then_reset: bool = False,
                       timeout: float = DEFAULT_TIMEOUT_S) -> RawResponse:
    """One raw HTTP request to the server of ``url``; ``target`` is the request target as sent
    (``/socket.io/?EIO=3``), never normalised."""
    host, port = _address(url)
    data = http_request_bytes(method, target, host=f"{host}:{port}", headers=headers, body=body,
                              content_length=content_length)
    return await send_raw(url, data, then_reset=then_reset, timeout=timeout)


# -- WebSocket ------------------------------------------------------------------------------------

def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True,
          length: int | None = None) -> bytes:
    """One WebSocket frame as a client sends it: masked unless ``mask=False``. ``rsv`` sets the
    three reserved bits (0-7); ``length`` may lie about the payload's size."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    if size < 126:
        head = struct.pack("!BB", first, (0x80 if mask else 0) | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, size)
    else:
        head = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _xor(payload, key)


def _xor(payload: bytes, key: bytes) -> bytes:
    """``payload`` masked with the 4-byte ``key`` (RFC 6455 section 5.3), as one big-integer XOR:
    a megabyte in milliseconds, where a byte loop takes a second."""
    size = len(payload)
    pad = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(pad, "big")).to_bytes(size, "big")


@dataclass
class Frame:
    """A frame from the server: opcode, payload, and for CLOSE its code and reason."""

    opcode: int
    payload: bytes
    fin: bool = True

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if self.opcode == CLOSE and len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode("utf-8", errors="replace") if self.opcode == CLOSE else ""


class HandshakeFailed(ConnectionError):
    """The server did not switch protocols; ``response`` says what it answered."""

    def __init__(self, response: RawResponse) -> None:
        self.response = response
        super().__init__(f"WebSocket upgrade refused: {response.describe()} {response.text[:200]!r}")


class RawWebSocket:
    """A WebSocket connection made by hand: the upgrade, then frames of any shape.

    ``async with RawWebSocket.connect(url) as ws`` upgrades at ``/socket.io/?EIO=4&transport=websocket``;
    ``ws.eio_open`` is the Engine.IO open packet when the server sent one. Engine.IO pings are
    answered while reading (``recv``) so a slow check is not dropped for a missed pong.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: RawResponse) -> None:
        self.reader, self.writer, self.response = reader, writer, response
        self.received: list[Frame] = []
        self.eio_open: dict[str, Any] | None = None
        self.closed_by_server: Frame | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, *, path: str = "/socket.io/", query: str = "EIO=4&transport=websocket",
                      headers: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                      read_open: bool = True):
        ws = await cls.open(url, path=path, query=query, headers=headers, timeout=timeout, read_open=read_open)
        try:
            yield ws
        finally:
            ws.abort()

    @classmethod
    async def open(cls, url: str, *, path: str = "/socket.io/", query: str = "EIO=4&transport=websocket",
                   headers: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                   read_open: bool = True) -> "RawWebSocket":
        """Upgrade (raises HandshakeFailed unless 101), and read Engine.IO's open packet if asked."""
        host, port = _address(url)
        key = base64.b64encode(os.urandom(16)).decode()
        wanted = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
                  "Sec-WebSocket-Version": "13", **(headers or {})}
        reader, writer = await _open(url, timeout)
        writer.write(http_request_bytes("GET", f"{path}?{query}" if query else path, host=f"{host}:{port}",
                                        headers=wanted))
        await asyncio.wait_for(writer.drain(), timeout)
        response = await _read_response(reader, timeout)
        if response.status != 101:
            writer.close()
            raise HandshakeFailed(response)
        ws = cls(reader, writer, response)
        if read_open:
            first = await ws.recv(timeout)
            if first is not None and first.opcode == TEXT and first.payload[:1] == b"0":
                with contextlib.suppress(ValueError):
                    ws.eio_open = json.loads(first.payload[1:])
        return ws

    async def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: Any) -> bool:
        """Send one frame (see ``frame``); False if the connection is already gone."""
        return await self.send_bytes(frame(opcode, payload, **kwargs))

    async def send_bytes(self, data: bytes) -> bool:
        """Send bytes as they are, frames or not."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), DEFAULT_TIMEOUT_S)
            return True
        except (ConnectionError, OSError, asyncio.TimeoutError):
            return False

    async def send_text(self, text: str | bytes) -> bool:
        """A text frame; bytes are sent as given (invalid UTF-8 included)."""
        return await self.send_frame(TEXT, text.encode() if isinstance(text, str) else text)

    async def send_binary(self, data: bytes) -> bool:
        return await self.send_frame(BINARY, data)

    async def _read_frame(self, timeout: float) -> Frame | None:
        head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        fin, opcode = bool(head[0] & 0x80), head[0] & 0xF
        size = head[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", await asyncio.wait_for(self.reader.readexactly(2), timeout))[0]
        elif size == 127:
            size = struct.unpack("!Q", await asyncio.wait_for(self.reader.readexactly(8), timeout))[0]
        key = await asyncio.wait_for(self.reader.readexactly(4), timeout) if head[1] & 0x80 else b""
        if size > MAX_READ:
            raise ConnectionError(f"server frame of {size} bytes exceeds the raw client's limit")
        payload = await asyncio.wait_for(self.reader.readexactly(size), timeout)
        if key:
            payload = _xor(payload, key)
        return Frame(opcode, payload, fin)

    async def recv(self, timeout: float = DEFAULT_TIMEOUT_S) -> Frame | None:
        """The next data or CLOSE frame (None on timeout or a connection gone). Engine.IO pings
        (``2``) and WebSocket pings are answered here and not returned."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                got = await self._read_frame(max(0.01, deadline - loop.time()))
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
                return None
            if got is None:
                return None
            if got.opcode == PING:
                await self.send_frame(PONG, got.payload)
                continue
            if got.opcode == TEXT and got.payload == b"2":
                await self.send_text("3")
                continue
            self.received.append(got)
            if got.opcode == CLOSE:
                self.closed_by_server = got
            return got

    async def recv_until(self, predicate: Any, timeout: float = DEFAULT_TIMEOUT_S) -> Frame | None:
        """The first frame ``predicate`` accepts, or None once the connection ends or the time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            got = await self.recv(deadline - loop.time())
            if got is None:
                return None
            if predicate(got):
                return got
            if got.opcode == CLOSE:
                return None
        return None

    async def socketio_connect(self, auth: Any = None, namespace: str = "/",
                               timeout: float = DEFAULT_TIMEOUT_S) -> Frame | None:
        """Send a Socket.IO CONNECT (``40``, with ``auth`` as JSON) and return the answer: a
        ``40``/``44`` frame for that namespace, or None (timeout, or the connection ended)."""
        prefix = "" if namespace == "/" else f"{namespace},"
        body = "" if auth is None else json.dumps(auth)
        await self.send_text(f"40{prefix}{body}")
        return await self.recv_until(
            lambda f: f.opcode == TEXT and f.text[:2] in ("40", "44") and f.text[2:].startswith(prefix), timeout)

    async def closed(self, timeout: float, *, keep_alive: bool = False) -> bool:
        """Whether the server ends the connection within ``timeout`` (frames before that are kept).
        ``keep_alive`` answers pings (WebSocket's and Engine.IO's) and keeps neither them nor the answers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                got = await self._read_frame(max(0.01, deadline - loop.time()))
            except asyncio.TimeoutError:
                return False
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return True
            if got is None:
                continue
            if keep_alive and got.opcode == PING:
                await self.send_frame(PONG, got.payload)
            elif keep_alive and got.opcode == TEXT and got.payload == b"2":
                await self.send_text("3")
            else:
                self.received.append(got)
                if got.opcode == CLOSE:
                    self.closed_by_server = got
                    return True
        return False

    @property
    def gone(self) -> bool:
        """Whether the connection has ended (EOF, a reset, or closed by us): ``recv`` will only say None."""
        return self.reader.at_eof() or self.reader.exception() is not None or self.writer.is_closing()

    async def held_until_closed(self, timeout: float) -> bool:
        """Keep the session alive and say nothing: answer pings, send nothing else, until the server
        ends the connection (True) or ``timeout`` passes (False). What a client that never sends its
        Socket.IO CONNECT does."""
        return await self.closed(timeout, keep_alive=True)

    def reset(self) -> None:
        """End with a TCP RST."""
        reset(self.writer)

    def abort(self) -> None:
        """Drop the connection without a closing handshake."""
        self.writer.transport.abort()


def close_reasons(sockets: Sequence[RawWebSocket]) -> list[str]:
    """The reasons of the CLOSE frames these connections received (what a leak check reads)."""
    return [f.close_reason for ws in sockets for f in ws.received if f.opcode == CLOSE and f.close_reason]
