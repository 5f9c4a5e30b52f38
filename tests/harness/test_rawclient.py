"""The raw client against tiny asyncio servers on loopback: bytes on the wire are what was asked for."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import time

import pytest

from realtime_conformance.harness import HandshakeFailed, RawWebSocket, http_request, rawclient, send_raw

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"


def _unmask(data: bytes) -> tuple[int, int, bytes]:
    """(first byte, payload length, unmasked payload) of one client frame."""
    first, second = data[0], data[1]
    size, at = second & 0x7F, 2
    if size == 126:
        size, at = struct.unpack("!H", data[2:4])[0], 4
    elif size == 127:
        size, at = struct.unpack("!Q", data[2:10])[0], 10
    assert second & 0x80, "client frames are masked (RFC 6455 5.3)"
    key, body = data[at:at + 4], data[at + 4:]
    return first, size, bytes(b ^ key[i % 4] for i, b in enumerate(body))


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536])
def test_frames_are_masked_and_sized(size):
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    first, length, body = _unmask(rawclient.frame(rawclient.BINARY, payload))
    assert first == 0x80 | rawclient.BINARY and length == size and body == payload


def test_reserved_bits_fin_and_lying_lengths():
    data = rawclient.frame(rawclient.PING, b"a", fin=False, rsv=5)
    assert data[0] == (5 << 4) | rawclient.PING  # FIN clear, RSV1 and RSV3 set
    assert rawclient.frame(rawclient.TEXT, b"xy", mask=False) == b"\x81\x02xy"
    lying = rawclient.frame(rawclient.BINARY, b"xx", length=1 << 62, mask=False)
    assert lying[1] == 127 and struct.unpack("!Q", lying[2:10])[0] == 1 << 62 and lying[10:] == b"xx"


async def _serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_http_request_sends_the_bytes_given_and_parses_the_answer():
    seen: list[bytes] = []

    async def handler(reader, writer):
        seen.append(await reader.readuntil(b"\r\n\r\n") + await reader.read(3))
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nX-A: b\r\n\r\nbad")
        await writer.drain()
        writer.close()

    async def main():
        server, url = await _serve(handler)
        async with server:
            return await http_request(url, "POST", "/socket.io/?EIO=9", body=b"4hi", content_length=99)

    got = asyncio.run(main())
    assert (got.status, got.body, got.headers["x-a"]) == (400, b"bad", "b")
    assert b"POST /socket.io/?EIO=9 HTTP/1.1\r\n" in seen[0] and b"Content-Length: 99\r\n" in seen[0]
    assert seen[0].endswith(b"\r\n\r\n4hi")


def test_a_reset_reaches_the_server_as_a_reset():
    outcome: list[object] = []

    async def handler(reader, writer):
        try:
            outcome.append(await reader.read(100))
            outcome.append(await asyncio.wait_for(reader.read(100), 3))
        except ConnectionResetError as exc:
            outcome.append(exc)
        writer.close()

    async def main():
        server, url = await _serve(handler)
        async with server:
            got = await send_raw(url, b"GET / HTTP/1.1\r\nUpgr", then_reset=True)
            for _ in range(100):  # bounded: the handler records the reset within a second
                if len(outcome) == 2:
                    break
                await asyncio.sleep(0.01)
            return got

    got = asyncio.run(main())
    assert got.closed and got.error == "reset by the client"
    assert outcome[0] == b"GET / HTTP/1.1\r\nUpgr" and isinstance(outcome[1], ConnectionResetError)


def test_a_silent_server_is_a_bounded_timeout():
    async def handler(reader, writer):
        await asyncio.sleep(5)

    async def main():
        server, url = await _serve(handler)
        async with server:
            t0 = time.monotonic()
            got = await http_request(url, "GET", "/", timeout=0.3)
            return got, time.monotonic() - t0

    got, took = asyncio.run(main())
    assert got.timed_out and got.status is None and took < 2


def _accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def test_websocket_upgrade_open_packet_pings_and_frames():
    """A minimal Engine.IO-ish server: 101, the open packet, a ping; then it echoes one client frame."""
    echoed: list[bytes] = []

    async def handler(reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        key = next(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("sec-websocket-key"))
        writer.write(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Accept: {_accept(key)}\r\n\r\n".encode())
        opened = b'0{"sid":"abc","pingInterval":1000}'
        writer.write(bytes([0x81, len(opened)]) + opened + b"\x81\x012")  # open packet, then an Engine.IO ping
        await writer.drain()
        for _ in range(2):  # the pong, then the frame to echo
            first, second = await reader.readexactly(2)
            key4 = await reader.readexactly(4)
            body = bytes(b ^ key4[i % 4] for i, b in enumerate(await reader.readexactly(second & 0x7F)))
            echoed.append(body)
        data = next(b for b in echoed if b != b"3")
        writer.write(bytes([0x81, len(data)]) + data + b"\x88\x05\x03\xe8bye")
        await writer.drain()
        writer.close()

    async def main():
        server, url = await _serve(handler)
        async with server:
            async with RawWebSocket.connect(url) as ws:
                opened = ws.eio_open
                await ws.send_text(b"4\xff")  # invalid UTF-8, sent as is
                frame = await ws.recv(2)
                closed = await ws.closed(2)
                return opened, frame, closed, ws.closed_by_server

    opened, frame, closed, close = asyncio.run(main())
    assert opened == {"sid": "abc", "pingInterval": 1000}
    assert sorted(echoed) == [b"3", b"4\xff"] and frame.payload == b"4\xff"  # the ping was answered
    assert closed and close.close_code == 1000 and close.close_reason == "bye"


def test_a_refused_upgrade_says_what_was_answered():
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 17\r\n\r\n" + json.dumps("Invalid transport").encode()[:17])
        await writer.drain()
        writer.close()

    async def main():
        server, url = await _serve(handler)
        async with server:
            with pytest.raises(HandshakeFailed) as info:
                await RawWebSocket.open(url, query="EIO=4&transport=nope")
            return info.value

    err = asyncio.run(main())
    assert err.response.status == 400 and "400" in str(err)
