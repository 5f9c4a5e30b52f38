"""Several gateway instances on one queue, one Redis adapter and one read model file.

Instance A starts first, so the broker makes it the queue's single active
consumer and B a standby: everything a client on B receives went through A and
Redis, and everything B's REST answers was written by A.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from gwkit import (Client, GatewayProcess, PrivateRedis, Publisher, arun, connected, conversation_update, mint,
                   new_message, status_update, unique)


def _cluster(gateway_factory: Any, redis_server: PrivateRedis, size: int = 2) -> list[GatewayProcess]:
    """``size`` instances sharing queue, database file and Redis; the first one started is the active consumer."""
    shared = Path(tempfile.mkdtemp(prefix="gwcluster-"))
    env = {"AGENT_PORTAL_EVENTS_QUEUE": unique("gwcluster.events"), "DATABASE_PATH": str(shared / "shared.sqlite3"),
           "REDIS_URL": redis_server.url}
    return [gateway_factory(**env) for _ in range(size)]


@pytest.fixture(scope="module")
def pair(gateway_factory: Any, redis_server: PrivateRedis) -> Iterator[list[GatewayProcess]]:
    instances = _cluster(gateway_factory, redis_server)
    yield instances
    for gw in instances:
        gw.stop(timeout=5)


def _publisher(gw: GatewayProcess) -> Publisher:
    return Publisher(gw.env["RABBITMQ_URL"], gw.queue, declare=False)


async def _ids(client: Client, count: int, event: str = "new_message") -> list[str]:
    return [(await client.next(event, timeout=10))[1]["messageId"] for _ in range(count)]


def test_every_client_gets_each_event_of_its_tenant_once_in_order(pair: list[GatewayProcess]) -> None:
    """Tabs of one tenant on A and on B each get all 300 events once, in order; the other tenant none of them."""
    a, b = pair

    async def body() -> None:
        red, blue = unique("red"), unique("blue")
        red_a, red_b = await connected(a.url, mint(red)), await connected(b.url, mint(red))
        blue_b = await connected(b.url, mint(blue))
        sent: dict[str, list[str]] = {red: [], blue: []}
        async with _publisher(a) as pub:
            for i in range(300):
                tenant = red if i % 3 else blue
                mid = f"m{i}"
                sent[tenant].append(mid)
                await pub.publish(new_message(tenant, "c1", mid))
            # A last blue event, published after every red one: once it is in, any stray red one would be too.
            await pub.publish(new_message(blue, "c1", "blue-last"))
        assert await _ids(red_a, len(sent[red])) == sent[red]
        assert await _ids(red_b, len(sent[red])) == sent[red]
        assert await _ids(blue_b, len(sent[blue]) + 1) == sent[blue] + ["blue-last"]
        for client in (red_a, red_b):
            assert len(client.received) == len(sent[red]), "an event arrived twice or from another tenant"
        assert len(blue_b.received) == len(sent[blue]) + 1
        for client in (red_a, red_b, blue_b):
            await client.close()

    arun(body())


def test_rest_on_the_standby_shows_what_the_active_consumed(pair: list[GatewayProcess]) -> None:
    """REST answers the same whichever instance serves it; so does the furthest status."""
    a, b = pair

    async def body() -> None:
        tenant = unique("rest")
        watcher = await connected(b.url, mint(tenant))
        async with _publisher(a) as pub:
            await pub.publish(new_message(tenant, "c1", "m1", "first", new=True))
            await pub.publish(new_message(tenant, "c2", "m2", "second", new=True))
            await pub.publish(status_update(tenant, "c1", "m1", "read"))
            await pub.publish(status_update(tenant, "c1", "m1", "delivered"))
            await pub.publish(conversation_update(tenant, "c1", "reply", "outbound", "2026-11-28T10:00:05Z"))
        await watcher.next("conversation_update", timeout=10)  # the last one: A has written all of it
        token = mint(tenant)
        answers = [(gw.request("GET", "/api/conversations", token)[1],
                    gw.request("GET", "/api/conversations/c1/messages", token)[1]) for gw in (a, b)]
        assert answers[0] == answers[1]
        conversations, messages = answers[1]
        assert [c["id"] for c in conversations] == ["c1", "c2"]
        assert [(m["messageId"], m["status"]) for m in messages] == [("m1", "read")]
        await watcher.close()

    arun(body())


def test_stats_emits_reach_every_instance_and_are_not_repeated(pair: list[GatewayProcess]) -> None:
    """Refresh on B reaches a tab on A; a GET on B after a GET on A with the same numbers emits nothing."""
    a, b = pair

    async def body() -> None:
        tenant = unique("stats")
        token = mint(tenant)
        on_a, on_b = await connected(a.url, token), await connected(b.url, token)
        async with _publisher(a) as pub:
            await pub.publish(new_message(tenant, "c1", "m1", new=True))
        for client in (on_a, on_b):
            await client.next("new_message", timeout=10)
            await client.next("metrics_update", timeout=10)  # the new conversation's, emitted by A
        status, _, _ = b.request("GET", "/api/dashboard/stats", token)  # unchanged since A's emit: no emit
        assert status == 200
        status, refreshed, _ = b.request("POST", "/api/dashboard/refresh", token)
        assert status == 200
        for client in (on_a, on_b):
            _, data = await client.next("metrics_update", timeout=10)
            assert data["totalMessagesToday"] == refreshed["totalMessagesToday"] == 1
            kinds = [name for name, _ in client.received]
            assert kinds == ["new_message", "metrics_update", "metrics_update"], kinds  # the GET added none
            await client.close()

    arun(body())


def test_standby_takes_over_when_the_active_instance_dies(gateway_factory: Any, redis_server: PrivateRedis) -> None:
    """SIGKILL the active instance: B's client sees the events before and after in order, none twice."""
    a, b = _cluster(gateway_factory, redis_server)

    async def body() -> None:
        tenant, barrier_tenant = unique("takeover"), unique("barrier")
        client = await connected(b.url, mint(tenant))
        barrier = await connected(b.url, mint(barrier_tenant))
        async with _publisher(a) as pub:
            for i in range(50):
                await pub.publish(new_message(tenant, "c1", f"before{i}"))
            await pub.publish(new_message(barrier_tenant, "c1", "barrier"))
            # A handles one message at a time: the barrier's arrival means the 50 are emitted and acked.
            await barrier.next("new_message", timeout=10)
            a.kill()
            for i in range(50):
                await pub.publish(new_message(tenant, "c1", f"after{i}"))
        expected = [f"before{i}" for i in range(50)] + [f"after{i}" for i in range(50)]
        assert await _ids(client, 100) == expected
        status, messages, _ = b.request("GET", "/api/conversations/c1/messages", mint(tenant))
        assert status == 200 and [m["messageId"] for m in messages] == expected
        assert len(client.received) == 100
        await client.close()
        await barrier.close()

    try:
        arun(body())
    finally:
        b.stop(timeout=5)


def test_queue_without_single_active_consumer_stops_a_clustered_gateway(gateway_factory: Any,
                                                                         redis_server: PrivateRedis) -> None:
    """A queue declared without x-single-active-consumer: exit 2 naming the fix, no competing consumers."""
    queue = unique("gwcluster.plain")
    gw = gateway_factory(start=False, AGENT_PORTAL_EVENTS_QUEUE=queue, REDIS_URL=redis_server.url)

    async def declare_plain() -> None:
        async with Publisher(gw.env["RABBITMQ_URL"], queue):  # declares it durable, with no arguments
            pass

    arun(declare_plain())
    gw.proc.start()
    assert gw.proc._wait(20), "the gateway kept running on a queue that lets instances compete"
    assert gw.proc.returncode == 2
    log = gw.log()
    assert "x-single-active-consumer" in log and "REDIS_URL" in log


def test_redis_outage_keeps_the_message_without_duplicating_it(gateway_factory: Any, tmp_path: Path) -> None:
    """While Redis is down a clustered instance neither acks nor dead-letters the event, and its own
    tab does not get it once per retry: it gets it once, when Redis is back.

    One instance, so that the same one consumes before and after the outage: an emit made while
    another instance re-subscribes is lost for that instance's tabs (pub/sub keeps nothing; see
    gateway/README.md), which this test is not about.
    """
    redis = PrivateRedis(tmp_path).start()
    (a,) = _cluster(gateway_factory, redis, size=1)

    async def body() -> None:
        tenant = unique("outage")
        tab = await connected(a.url, mint(tenant))
        async with _publisher(a) as pub:
            await pub.publish(new_message(tenant, "c1", "warm"))
            await tab.next("new_message", timeout=10)
            redis.stop()
            await pub.publish(new_message(tenant, "c1", "during"))
            # Bounded: the consumer fails, reconnects and retries with backoff meanwhile.
            deadline = asyncio.get_running_loop().time() + 10
            while "failed" not in a.log().split("during", 1)[-1] and "FanoutUnavailable" not in a.log():
                assert asyncio.get_running_loop().time() < deadline, a.log()[-3000:]
                await asyncio.sleep(0.05)
            redis.start()
            assert (await tab.next("new_message", timeout=20))[1]["messageId"] == "during"
            await pub.publish(new_message(tenant, "c1", "after"))
            assert (await tab.next("new_message", timeout=10))[1]["messageId"] == "after"
            assert [d["messageId"] for _, d in tab.received] == ["warm", "during", "after"]
            assert await pub.counts(f"{a.queue}.dlq") == 0
        await tab.close()

    try:
        arun(body(), timeout=60)
        assert a.stop(timeout=5) == 0, "a clustered gateway must exit 0 on SIGTERM"
    finally:
        a.stop(timeout=5)
        redis.stop()
