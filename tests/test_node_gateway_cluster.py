"""The Node example gateway as two instances on one queue, one Redis (streams adapter) and one
read model file: delivery across instances, takeover by the standby, and connection state
recovery on the other instance after the first one is killed."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import aio_pika
import jwt
import pytest
import socketio

from realtime_conformance.harness.providers.broker import PrivateRabbitNode
from realtime_conformance.harness.wire.clients import RecoveringClient, RecoverySession

from nodekit import NodeGateway, PrivateRedis, ensure_node_modules

SECRET = "node-cluster-test-secret-0123456789abcdef-0123456789abcdef"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None or shutil.which("redis-server") is None,
    reason="needs node and npm (Node.js 20) and redis-server on PATH",
)


@pytest.fixture(scope="module")
def parts() -> Iterator[tuple[PrivateRabbitNode, PrivateRedis]]:
    ensure_node_modules()
    broker = PrivateRabbitNode()
    broker.start()
    redis = PrivateRedis(Path(tempfile.mkdtemp(prefix="node-cluster-redis-"))).start()
    try:
        yield broker, redis
    finally:
        redis.stop()
        broker.close()


def _token(tenant: str) -> str:
    now = int(time.time())
    return jwt.encode({"tenant_id": tenant, "aud": "agent-portal", "iat": now, "exp": now + 300}, SECRET,
                      algorithm="HS256")


def _event(tenant: str, mid: str) -> bytes:
    return json.dumps({"type": "new_message", "tenantId": tenant, "timestamp": "2026-11-28T10:00:00.000Z", "data": {
        "conversationId": "c1", "messageId": mid, "from": "+15550001", "from_name": "Ann", "message": mid,
        "media_url": None, "timestamp": "2026-11-28T10:00:00.000Z", "isNewConversation": False}}).encode()


class Tab:
    """A recording client; `session` shared between two Tabs is one socket.io-client socket reconnecting."""

    def __init__(self, session: RecoverySession | None = None) -> None:
        self.sio = RecoveringClient(reconnection=False, handle_sigint=False, session=session)
        self.ids: list[str] = []
        self.arrived = asyncio.Event()

        @self.sio.on("*")
        async def any_event(event: str, data: Any = None) -> None:
            if event == "new_message":
                self.ids.append(data["messageId"])
                self.arrived.set()

    async def connect(self, url: str, tenant: str) -> "Tab":
        await self.sio.connect(url, auth={"token": _token(tenant)}, transports=["websocket"], wait_timeout=5)
        return self

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.ids) < count:
            self.arrived.clear()
            left = deadline - loop.time()
            assert left > 0, f"got {len(self.ids)} of {count} events: {self.ids[-5:]}"
            try:
                await asyncio.wait_for(self.arrived.wait(), timeout=left)
            except asyncio.TimeoutError:
                pass
        return self.ids[:count]

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


def test_two_node_instances_share_delivery_takeover_and_recovery(parts: tuple[PrivateRabbitNode, PrivateRedis],
                                                                 tmp_path: Path) -> None:
    broker, redis = parts
    queue = f"node-cluster.{uuid.uuid4().hex[:8]}"
    env = {"AMQP_URL": broker.amqp_url, "JWT_SECRET_KEY": SECRET, "EVENTS_QUEUE": queue, "REDIS_URL": redis.url,
           "DB_FILE": str(tmp_path / "shared.sqlite3")}
    a = NodeGateway(tmp_path, **env).start()  # first subscribed: the active consumer
    b = NodeGateway(tmp_path, **env).start()

    async def body() -> None:
        red, blue = f"red-{uuid.uuid4().hex[:6]}", f"blue-{uuid.uuid4().hex[:6]}"
        red_a, red_b = await Tab().connect(a.url, red), await Tab().connect(b.url, red)
        blue_b = await Tab().connect(b.url, blue)
        roaming = RecoverySession()
        roamer = await Tab(roaming).connect(a.url, red)
        conn = await aio_pika.connect(broker.amqp_url, timeout=5)
        try:
            ch = await conn.channel(publisher_confirms=True)

            async def publish(body_: bytes) -> None:
                await ch.default_exchange.publish(aio_pika.Message(body_, delivery_mode=2), routing_key=queue)

            # 1. Each event of a tenant reaches its tabs on both instances once, in order; none crosses tenants.
            sent: dict[str, list[str]] = {red: [], blue: []}
            for i in range(120):
                tenant = red if i % 3 else blue
                sent[tenant].append(f"m{i}")
                await publish(_event(tenant, f"m{i}"))
            await publish(_event(blue, "blue-last"))
            assert await red_a.wait_for(80) == sent[red]
            assert await red_b.wait_for(80) == sent[red]
            assert await roamer.wait_for(80) == sent[red]
            assert await blue_b.wait_for(41) == sent[blue] + ["blue-last"]
            assert len(red_a.ids) == len(red_b.ids) == 80 and len(blue_b.ids) == 41

            # 2. REST on the standby shows what the active instance consumed.
            status, answer = b.get("/api/conversations/c1/messages", _token(red))
            assert status == 200 and [m["messageId"] for m in answer["messages"]] == sent[red]

            # 3. Kill the active instance: B takes the queue over; its tab sees no gap and nothing twice.
            await publish(_event(blue, "barrier"))
            await blue_b.wait_for(42)  # A handles one message at a time: everything before is emitted and acked
            a.kill()
            after = [f"after{i}" for i in range(30)]
            for mid in after:
                await publish(_event(red, mid))
            assert await red_b.wait_for(110, timeout=20) == sent[red] + after
            assert len(red_b.ids) == 110

            # 4. The tab that was on A resumes its session on B and gets what it missed, once.
            assert roaming.pid is not None and roaming.offset is not None
            # Another tenant's valid token presenting that pid is a new connection, not the session.
            intruder = await Tab(RecoverySession(roaming.pid, roaming.offset)).connect(b.url, blue)
            assert not intruder.sio.recovered and intruder.ids == []
            await intruder.close()
            resumed = await Tab(roaming).connect(b.url, red)
            assert resumed.sio.recovered, "the session created on A was not resumed on B"
            assert await resumed.wait_for(30) == after
            await publish(_event(red, "live"))
            assert await resumed.wait_for(31) == after + ["live"]
            await resumed.close()
        finally:
            await conn.close()
            for tab in (red_a, red_b, blue_b, roamer):
                await tab.close()

    try:
        asyncio.run(asyncio.wait_for(body(), 90))
        assert b.stop() == 0, "SIGTERM must end a clustered instance with exit code 0"
    except BaseException:
        print("--- A\n" + a.log()[-4000:] + "\n--- B\n" + b.log()[-4000:])
        raise
    finally:
        a.stop()
        b.stop()


def test_queue_without_single_active_consumer_stops_a_clustered_node_gateway(
        parts: tuple[PrivateRabbitNode, PrivateRedis], tmp_path: Path) -> None:
    broker, redis = parts
    queue = f"node-cluster.plain.{uuid.uuid4().hex[:8]}"

    async def declare_plain() -> None:
        conn = await aio_pika.connect(broker.amqp_url, timeout=5)
        try:
            await (await conn.channel()).declare_queue(queue, durable=True)
        finally:
            await conn.close()

    asyncio.run(declare_plain())
    gw = NodeGateway(tmp_path, AMQP_URL=broker.amqp_url, JWT_SECRET_KEY=SECRET, EVENTS_QUEUE=queue,
                     REDIS_URL=redis.url, DB_FILE=str(tmp_path / "db.sqlite3"))
    gw.proc.start()
    try:
        assert gw.proc._wait(20), "the gateway kept running on a queue that lets instances compete"
        assert gw.proc.returncode == 78
        assert "x-single-active-consumer" in gw.log() and "REDIS_URL" in gw.log()
    finally:
        gw.stop()
