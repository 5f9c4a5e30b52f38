"""FAULT-4: a client that connects and then stops reading does not delay others."""

from __future__ import annotations

import base64
import json
import os
import socket
import time

from gwkit import GatewayProcess, Publisher, arun, connected, envelope, mint, unique


def _frame(text: str) -> bytes:
    """One masked client text frame (RFC 6455)."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _stalled_client(port: int, token: str) -> socket.socket:
    """A websocket Socket.IO client that authenticates, then never reads again."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(1)
    assert b" 101 " in buf.split(b"\r\n", 1)[0] + b" "
    sock.sendall(_frame("40" + json.dumps({"token": token})))
    deadline = time.monotonic() + 5
    while b"40{" not in buf:  # Engine.IO OPEN, then the Socket.IO CONNECT ack
        assert time.monotonic() < deadline, buf
        buf += sock.recv(4096)
    return sock


def test_stalled_client_does_not_delay_others(gateway: GatewayProcess) -> None:
    tenant = unique("stall")
    token = mint(tenant)
    stalled = _stalled_client(gateway.port, token)

    async def body() -> None:
        healthy = await connected(gateway.url, token)
        big = "x" * 200_000
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            for i in range(40):  # ~8 MB toward a client that reads nothing
                await pub.publish(envelope("new_message", tenant, {
                    "conversationId": "c", "messageId": f"big{i}", "timestamp": "t", "from": big}))
            for i in range(40):
                await healthy.next("new_message", timeout=10)
            for i in range(10):
                t0 = time.monotonic()
                await pub.publish(envelope("new_message", tenant, {
                    "conversationId": "c", "messageId": f"small{i}", "timestamp": "t"}))
                _, data = await healthy.next("new_message", timeout=2)
                assert data["messageId"] == f"small{i}"
                assert time.monotonic() - t0 < 1.0
        await healthy.close()

    try:
        arun(body())
    finally:
        stalled.close()
