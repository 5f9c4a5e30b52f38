"""Delivery from the queue to tenant rooms: right room only (with positive
controls), order, tabs, dead-lettering of malformed messages, and idempotent
recording of a body delivered twice."""

from __future__ import annotations

import json
from typing import Any

from realtime_conformance import contract
from gwkit import (Client, GatewayProcess, Publisher, arun, connected, conversation_update, envelope, mint,
                   new_message, status_update, unique)

ODD_TENANTS = ["a:b", "a", "*", "tenant:x", "tenant:", "租户-ü-🙂", "x" * 256, "tenant:a:b", "#", "a b"]


def test_events_reach_only_their_tenant_with_odd_ids(gateway: GatewayProcess) -> None:
    """ISO-1/ISO-3 with a positive control per tenant; DLV-1 JSON-equal payloads; DLV-6 four types."""

    async def body() -> None:
        salt = unique("iso")
        tenants = ODD_TENANTS  # used by no other test; the shared gateway's queue and database are fresh per session
        clients = {t: await connected(gateway.url, mint(t)) for t in tenants}
        sent: dict[str, list[tuple[str, Any]]] = {t: [] for t in tenants}
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            for t in tenants:
                events = [
                    new_message(t, f"c-{salt}", f"m-{salt}-{t}", text=f"for {t}"),
                    conversation_update(t, f"c-{salt}", "reply", "outbound", "2026-11-28T10:00:05Z"),
                    status_update(t, f"c-{salt}", f"m-{salt}-{t}", "read"),
                    envelope("metrics_update", t, {"activeConversations": 1, "waitingConversations": 0,
                                                   "totalMessagesToday": 2, "avgResponseTime": 1.5,
                                                   "timestamp": "2026-11-28T10:00:06Z"}),
                ]
                for ev in events:
                    await pub.publish(ev)
                    sent[t].append((ev["type"], ev["data"]))
        for t in tenants:
            got = [await clients[t].next(timeout=5) for _ in sent[t]]
            assert got == sent[t], t
        # The last tenant's events were published last: anything misrouted has arrived by now.
        for t, c in clients.items():
            assert c.received == sent[t], f"{t!r} got {len(c.received)} events"
            await c.close()

    arun(body())


def test_order_and_tabs(gateway: GatewayProcess) -> None:
    """DLV-5 per-tenant order; TAB-1 each tab gets each event once; TAB-2 closing a tab."""

    async def body() -> None:
        tenant = unique("tabs")
        token = mint(tenant)
        tabs = [await connected(gateway.url, token, transports=[tr]) for tr in ("websocket", "websocket", "polling")]
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            for i in range(30):
                await pub.publish(new_message(tenant, "c1", f"m{i}"))
            seen = [[(await tab.next("new_message"))[1]["messageId"] for _ in range(30)] for tab in tabs]
            assert all(s == [f"m{i}" for i in range(30)] for s in seen)
            await tabs[0].close()
            await pub.publish(new_message(tenant, "c1", "after-close"))
            for tab in tabs[1:]:
                assert (await tab.next("new_message"))[1]["messageId"] == "after-close"
        for tab in tabs[1:]:
            assert [d["messageId"] for _, d in tab.received].count("after-close") == 1
            await tab.close()

    arun(body())


MALFORMED: list[tuple[str, bytes]] = [
    ("not json", b"{not json"),
    ("not utf-8", b"\xff\xfe\x00"),
    ("array", b"[1, 2]"),
    ("string", b'"hello"'),
    ("missing tenantId", json.dumps({"type": "new_message", "data": {}, "timestamp": "t"}).encode()),
    ("missing type", json.dumps({"tenantId": "x", "data": {}, "timestamp": "t"}).encode()),
    ("missing data", json.dumps({"type": "new_message", "tenantId": "x", "timestamp": "t"}).encode()),
    ("unknown type", json.dumps(envelope("delete_everything", "x", {})).encode()),
    ("wrong field type", json.dumps({**envelope("status_update", "x", {}), "tenantId": 42}).encode()),
    ("bad data", json.dumps(envelope("status_update", "x", {"messageId": "m", "status": "nope"})).encode()),
    ("oversize", json.dumps(new_message("x", "c", "m")).encode() + b" " * contract.limits().max_envelope_bytes),
]


def test_malformed_messages_are_dead_lettered_and_valid_ones_still_flow(gateway: GatewayProcess) -> None:
    """FAULT-2: each kind lands on <queue>.dlq with its reason; the queue drains (DLV-7)."""

    async def body() -> None:
        tenant = unique("dlq")
        client = await connected(gateway.url, mint(tenant))
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            for i, (_, raw) in enumerate(MALFORMED):
                await pub.publish(raw)
                await pub.publish(new_message(tenant, "c", f"after-{i}"))
            ids = [(await client.next("new_message"))[1]["messageId"] for _ in MALFORMED]
            assert ids == [f"after-{i}" for i in range(len(MALFORMED))]
            for name, raw in MALFORMED:
                msg = await pub.get(f"{gateway.queue}.dlq")
                assert msg.body == raw, name
                assert msg.headers["x-original-queue"] == gateway.queue
                assert msg.headers["x-dlq-reason"], name
            assert await pub.counts(f"{gateway.queue}.dlq") == 0
            assert await pub.counts() == 0
        await client.close()

    arun(body())


def test_same_body_twice_is_emitted_twice_but_counted_once(gateway: GatewayProcess) -> None:
    """A redelivered body must not double-count in the read model; each queue message is emitted once."""

    async def body() -> None:
        tenant = unique("dup")
        token = mint(tenant)
        client = await connected(gateway.url, token)
        ev = new_message(tenant, "c-dup", "m-dup", new=False)
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            await pub.publish(ev)
            await pub.publish(ev)
            await pub.publish(new_message(tenant, "c-dup", "m-marker"))
        got = [(await client.next("new_message"))[1]["messageId"] for _ in range(3)]
        assert got == ["m-dup", "m-dup", "m-marker"]
        status, stats, _ = gateway.request("GET", "/api/dashboard/stats", token)
        assert status == 200
        assert stats["totalMessagesToday"] == 2 and stats["activeConversations"] == 1
        status, msgs, _ = gateway.request("GET", "/api/conversations/c-dup/messages", token)
        assert [m["messageId"] for m in msgs] == ["m-dup", "m-marker"]
        await client.close()

    arun(body())


def test_unauthenticated_client_is_not_in_any_tenant_room(gateway: GatewayProcess) -> None:
    async def body() -> None:
        tenant = unique("noauth")
        control = await connected(gateway.url, mint(tenant))
        anon = Client()
        assert not await anon.connect(gateway.url, auth=None)
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            await pub.publish(new_message(tenant, "c", "m"))
        await control.next("new_message")
        assert anon.received == []
        await control.close()

    arun(body())
