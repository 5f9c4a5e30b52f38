"""Helpers for the gateway tests: tokens, envelopes, an AMQP publisher, gateway
processes and recording Socket.IO clients. Tests are plain synchronous
functions that drive their async body with ``arun``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Awaitable, TypeVar

import aio_pika
import jwt
import socketio

from realtime_conformance.harness.providers.ports import free_port
from realtime_conformance.harness.providers.processes import ManagedProcess
from realtime_conformance.harness.providers.redis_server import PrivateRedis  # noqa: F401 (tests import it from here)

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-for-the-gateway-0123456789abcdef-0123456789abcdef-xyz"  # 67 bytes
ORIGINS = "http://localhost:3014,https://portal.example.com,http://127.0.0.1:8080"
T = TypeVar("T")


def arun(coro: Awaitable[T], timeout: float = 40.0) -> T:
    """Run one test's async body in a fresh loop, bounded."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def mint(tenant: Any = "tenant-a", *, secret: str = SECRET, alg: str = "HS256", exp_in: float | None = 300,
         claim: str = "tenantId", extra: dict[str, Any] | None = None, drop_tenant: bool = False) -> str:
    """A signed test token (``alg='none'`` gives an unsigned one)."""
    now = int(time.time())
    payload: dict[str, Any] = {"sub": "agent-1", "iat": now}
    if not drop_tenant:
        payload[claim] = tenant
    if exp_in is not None:
        payload["exp"] = now + exp_in
    payload.update(extra or {})
    if alg == "none":
        return jwt.encode(payload, None, algorithm="none")
    return jwt.encode(payload, secret, algorithm=alg)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def envelope(kind: str, tenant: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "tenantId": tenant, "data": data, "timestamp": "2026-11-28T10:00:00.000Z"}


def new_message(tenant: str, conv: str, mid: str, text: str = "hi", *, new: bool = False,
                ts: str = "2026-11-28T10:00:00.000Z") -> dict[str, Any]:
    return envelope("new_message", tenant, {
        "conversationId": conv, "messageId": mid, "from": "+15550001", "from_name": "Ann",
        "message": text, "media_url": None, "timestamp": ts, "isNewConversation": new})


def status_update(tenant: str, conv: str, mid: str, status: str) -> dict[str, Any]:
    return envelope("status_update", tenant, {
        "messageId": mid, "conversationId": conv, "status": status, "timestamp": "2026-11-28T10:00:01.000Z"})


def conversation_update(tenant: str, conv: str, text: str, direction: str, at: str) -> dict[str, Any]:
    return envelope("conversation_update", tenant, {
        "id": conv, "conversationId": conv, "lastMessage": text, "lastMessageAt": at, "direction": direction})


# -- the broker -----------------------------------------------------------------------------------


class Publisher:
    """Publishes persistent, confirmed messages to one queue (declared the gateway's way)."""

    def __init__(self, url: str, queue: str, *, declare: bool = True) -> None:
        self.url, self.queue, self.declare = url, queue, declare
        self.connection: Any = None
        self.channel: Any = None

    async def __aenter__(self) -> "Publisher":
        self.connection = await aio_pika.connect(self.url, timeout=5)
        self.channel = await self.connection.channel(publisher_confirms=True)
        if self.declare:  # off for a queue the gateways declared with arguments of their own
            await self.channel.declare_queue(self.queue, durable=True)
            await self.channel.declare_queue(f"{self.queue}.dlq", durable=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def publish(self, message: dict[str, Any] | bytes) -> None:
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        await self.channel.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=self.queue)

    async def counts(self, queue: str | None = None) -> int:
        """Ready messages in ``queue`` (passive declare: exact)."""
        ch = await self.connection.channel()
        try:
            q = await ch.declare_queue(queue or self.queue, passive=True)
            return int(q.declaration_result.message_count)
        finally:
            await ch.close()

    async def get(self, queue: str, timeout: float = 10.0) -> Any:
        """Fetch (and ack) one message from ``queue``, waiting up to ``timeout``."""
        ch = await self.connection.channel()
        try:
            q = await ch.declare_queue(queue, passive=True)
            deadline = time.monotonic() + timeout
            while True:
                msg = await q.get(no_ack=True, fail=False)
                if msg is not None:
                    return msg
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nothing arrived on {queue} within {timeout} s")
                await asyncio.sleep(0.05)
        finally:
            await ch.close()


# -- gateway processes -------------------------------------------------------------------------------


class GatewayProcess:
    """One ``python -m realtime_conformance.gateway`` child with its own port, queue and database."""

    def __init__(self, amqp_url: str, workdir: Path, **env: str) -> None:
        self.port = free_port()
        self.queue = env.pop("AGENT_PORTAL_EVENTS_QUEUE", None) or unique("gwtest.events")
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        self.env.update(
            HOST="127.0.0.1", PORT=str(self.port), RABBITMQ_URL=amqp_url, JWT_SECRET=SECRET,
            DATABASE_PATH=str(workdir / "gateway.sqlite3"), AGENT_PORTAL_EVENTS_QUEUE=self.queue,
            ALLOWED_ORIGINS=ORIGINS, PING_INTERVAL="5", PING_TIMEOUT="5", PYTHONUNBUFFERED="1",
            LOG_LEVEL="info",
        )
        self.env.update(env)
        self.proc = ManagedProcess([sys.executable, "-m", "realtime_conformance.gateway"], name="gateway",
                                   log_path=workdir / "gateway.log", env=self.env, cwd=REPO)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_broker: bool = True, timeout: float = 20.0) -> "GatewayProcess":
        self.proc.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.running:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                health = self.health()
                if not wait_broker or health["broker"] == "connected":
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"gateway not ready within {timeout} s:\n{self.log()}")

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
            return json.loads(resp.read())

    def request(self, method: str, path: str, token: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body or None, headers) of one REST call."""
        req = urllib.request.Request(f"{self.url}{path}", method=method, data=b"" if method == "POST" else None)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                raw, status, hdrs = resp.read(), resp.status, dict(resp.headers)
        except urllib.error.HTTPError as exc:
            raw, status, hdrs = exc.read(), exc.code, dict(exc.headers)
        return status, (json.loads(raw) if raw else None), {k.lower(): v for k, v in hdrs.items()}

    def log(self) -> str:
        return self.proc.log_tail(20000)

    def stop(self, timeout: float = 15.0) -> int | None:
        return self.proc.terminate(timeout=timeout)

    def kill(self) -> None:
        self.proc.kill()


# -- Socket.IO clients ---------------------------------------------------------------------------------


class Client:
    """A real python-socketio AsyncClient that records every event it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.received: list[tuple[str, Any]] = []
        self.refusal: Any = None
        self.disconnected = asyncio.Event()

        @self.sio.on("*")
        async def any_event(event: str, data: Any = None) -> None:
            self.received.append((event, data))
            await self.events.put((event, data))

        @self.sio.event
        async def connect_error(data: Any = None) -> None:
            self.refusal = data

        @self.sio.event
        async def disconnect(reason: Any = None) -> None:
            self.disconnected.set()

    async def connect(self, url: str, *, auth: Any = None, transports: list[str] | None = None,
                      headers: dict[str, str] | None = None, query: str = "") -> bool:
        try:
            await self.sio.connect(url + query, auth=auth, transports=transports or ["websocket"],
                                   headers=headers or {}, wait_timeout=5)
            return True
        except socketio.exceptions.ConnectionError:
            return False
        except RuntimeError as exc:
            # python-engineio's polling client closes its HTTP session before reading a
            # refused (non-2xx) handshake's body, which sometimes raises this instead.
            if "Connection closed" not in str(exc):
                raise
            return False

    async def next(self, event: str | None = None, timeout: float = 5.0) -> tuple[str, Any]:
        """The next received event (of name ``event``, skipping others), bounded."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            got = await asyncio.wait_for(self.events.get(), timeout=max(left, 0.001))
            if event is None or got[0] == event:
                return got

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


async def connected(url: str, token: str, **kw: Any) -> Client:
    """A client that must connect; fails the test with the refusal otherwise."""
    client = Client()
    ok = await client.connect(url, auth={"token": token}, **kw)
    assert ok, f"connection refused: {client.refusal!r}"
    return client


def refusal_code(data: Any) -> str | None:
    """The refusal code from a connect_error payload."""
    if isinstance(data, dict):
        if isinstance(data.get("data"), dict) and "code" in data["data"]:
            return data["data"]["code"]
        return data.get("code")
    return None
