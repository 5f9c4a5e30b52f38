"""Lifecycle and faults: broker restart (FAULT-1), SIGKILL with events in flight
(FAULT-3, idempotent read model), graceful SIGTERM, start-up without a broker."""

from __future__ import annotations

import asyncio
import time

from gwkit import GatewayProcess, Publisher, arun, connected, mint, new_message, unique


def _wait_health(gw: GatewayProcess, broker: str, timeout: float) -> float:
    """Seconds until /health reports ``broker``; fails after ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if gw.health()["broker"] == broker:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"/health did not report broker={broker} within {timeout} s:\n{gw.log()[-3000:]}")


def test_broker_restart_resumes_consuming(gateway: GatewayProcess, rabbit) -> None:
    """FAULT-1: after a hard RabbitMQ restart, consuming resumes within 30 s without a gateway restart."""
    tenant = unique("brk")
    token = mint(tenant)

    async def body() -> None:
        client = await connected(gateway.url, token)  # spans the broker restart
        async with Publisher(rabbit.amqp_url, gateway.queue) as pub:
            await pub.publish(new_message(tenant, "c", "before"))
        assert (await client.next("new_message"))[1]["messageId"] == "before"
        await asyncio.to_thread(rabbit.restart, hard=True)
        t0 = time.monotonic()
        await asyncio.to_thread(_wait_health, gateway, "connected", 30)
        async with Publisher(rabbit.amqp_url, gateway.queue) as pub:
            await pub.publish(new_message(tenant, "c", "after"))
        assert (await client.next("new_message", timeout=10))[1]["messageId"] == "after"
        assert time.monotonic() - t0 < 30
        assert client.sio.connected  # Socket.IO clients never noticed
        await client.close()

    arun(body(), timeout=60)
    status, stats, _ = gateway.request("GET", "/api/dashboard/stats", token)
    assert status == 200 and stats["totalMessagesToday"] == 2


def test_sigkill_loses_nothing_and_read_model_survives(gateway_factory, rabbit, tmp_path) -> None:
    """FAULT-3: events in flight at SIGKILL reach clients after the restart; nothing double-counts."""
    tenant = unique("kill")
    token = mint(tenant)
    queue = unique("gwtest.kill")
    gw = gateway_factory(workdir=tmp_path, AGENT_PORTAL_EVENTS_QUEUE=queue, BACKLOG_GRACE="3")
    ids = [f"m{i}" for i in range(150)]

    async def first_life() -> list[str]:
        client = await connected(gw.url, token)
        async with Publisher(rabbit.amqp_url, queue) as pub:
            for mid in ids[:120]:
                await pub.publish(new_message(tenant, "c", mid))
            got = [(await client.next("new_message"))[1]["messageId"] for _ in range(5)]
            gw.kill()
            for mid in ids[120:]:
                await pub.publish(new_message(tenant, "c", mid))
        await asyncio.sleep(0)  # drain what the client had buffered before the kill
        while not client.events.empty():
            got.append(client.events.get_nowait()[1]["messageId"])
        await client.close()
        return got

    async def second_life(seen: list[str]) -> list[str]:
        client = await connected(gw.url, token)
        missing = [m for m in ids if m not in set(seen)]
        got: list[str] = []
        while set(missing) - set(got):
            got.append((await client.next("new_message", timeout=10))[1]["messageId"])
        await client.close()
        return got

    seen = arun(first_life())
    assert not gw.proc.running
    gw.start(wait_broker=False)
    again = arun(second_life(seen))
    assert set(seen) | set(again) == set(ids)
    _wait_health(gw, "connected", 10)
    status, msgs, _ = gw.request("GET", "/api/conversations/c/messages", token)
    assert [m["messageId"] for m in msgs] == ids  # once each, in order, despite redelivery
    status, stats, _ = gw.request("GET", "/api/dashboard/stats", token)
    assert stats["totalMessagesToday"] == 150 and stats["activeConversations"] == 1
    assert gw.stop() == 0


def test_starts_without_broker_and_sigterm_exits_0(gateway_factory) -> None:
    """HTTP answers (degraded) while the broker is unreachable; SIGTERM is graceful; start-up logs."""
    gw = gateway_factory(wait_broker=False, RABBITMQ_URL="amqp://guest:guest@127.0.0.1:1/")
    assert gw.health() == {"status": "degraded", "broker": "disconnected", "queue": gw.queue}

    async def body() -> None:
        client = await connected(gw.url, mint(unique("term")))
        t0 = time.monotonic()
        code = await asyncio.to_thread(gw.stop, 15)
        assert code == 0
        assert time.monotonic() - t0 < 8
        await asyncio.wait_for(client.disconnected.wait(), timeout=5)

    arun(body())
    log = gw.log()
    assert "Socket.io initialized" in log
    assert f"listening on port {gw.port}" in log
