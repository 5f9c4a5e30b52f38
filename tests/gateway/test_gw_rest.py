"""REST: the same token rules as the handshake (REST-2), tenant scoping (ISO-4),
the metrics_update emission rules (MET-2, MET-3, MET-4) and status ranking (STAT-2)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from gwkit import (GatewayProcess, Publisher, arun, b64url, connected, conversation_update, mint, new_message,
                   status_update, unique)

STATS = "/api/dashboard/stats"
REFRESH = "/api/dashboard/refresh"


def _numbers(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k != "timestamp"}


def test_health_needs_no_token(gateway: GatewayProcess) -> None:
    status, body, _ = gateway.request("GET", "/health")
    assert status == 200
    assert body == {"status": "ok", "broker": "connected", "queue": gateway.queue}


@pytest.mark.parametrize("path,method", [(STATS, "GET"), (REFRESH, "POST"), ("/api/conversations", "GET"),
                                         ("/api/conversations/c1/messages", "GET")])
def test_rest_refuses_bad_tokens_with_401(gateway: GatewayProcess, path: str, method: str) -> None:
    head, _, sig = mint("victim").split(".")
    tampered = f"{head}.{b64url(json.dumps({'tenantId': 'other', 'exp': int(time.time()) + 60}).encode())}.{sig}"
    cases = {
        None: "token_missing",
        mint("t", exp_in=-1): "token_expired",
        mint("t", secret="another-secret-of-sufficient-length-000"): "token_invalid",
        tampered: "token_invalid",
        mint("t", alg="none"): "token_algorithm",
        mint("t", alg="HS384"): "token_algorithm",
        mint("t", drop_tenant=True): "tenant_missing",
        mint("t", extra={"nbf": int(time.time()) + 60}): "token_not_yet_valid",
    }
    for token, code in cases.items():
        status, body, _ = gateway.request(method, path, token)
        assert status == 401, (token, body)
        assert body["code"] == code and body["error"], body
    status, body, _ = gateway.request(method, path, headers={"Authorization": f"Basic {mint('t')}"})
    assert status == 401 and body["code"] == "token_missing"


def test_stats_emission_rules_and_tenant_scope(gateway: GatewayProcess) -> None:
    async def body() -> None:
        tenant, other = unique("stats"), unique("other")
        token = mint(tenant)
        tab = await connected(gateway.url, token)
        bystander = await connected(gateway.url, mint(other))

        # First fetch: nothing emitted yet for this tenant, so it emits, with the same numbers.
        status, first, _ = await asyncio.to_thread(gateway.request, "GET", STATS, token)
        assert status == 200
        assert set(first) == {"activeConversations", "waitingConversations", "totalMessagesToday",
                              "avgResponseTime", "timestamp"}
        assert (await tab.next("metrics_update"))[1] == first

        # Same numbers again: no emit (this is what stops the portal's refetch loop).
        status, again, _ = await asyncio.to_thread(gateway.request, "GET", STATS, token)
        assert _numbers(again) == _numbers(first)

        # Refresh always emits; the next event is the refresh's, so the GET above emitted nothing.
        status, refreshed, _ = await asyncio.to_thread(gateway.request, "POST", REFRESH, token)
        assert status == 200
        assert (await tab.next()) == ("metrics_update", refreshed)

        # A change, then a fetch: emits the new numbers.
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            await pub.publish(new_message(tenant, "c1", "m1"))
        assert (await tab.next())[0] == "new_message"
        status, changed, _ = await asyncio.to_thread(gateway.request, "GET", STATS, token)
        assert changed["activeConversations"] == 1 and changed["waitingConversations"] == 1
        assert changed["totalMessagesToday"] == 1
        assert (await tab.next()) == ("metrics_update", changed)

        status, refreshed, _ = await asyncio.to_thread(gateway.request, "POST", REFRESH, token)
        assert (await tab.next()) == ("metrics_update", refreshed)
        assert tab.events.empty()
        assert bystander.received == []
        await tab.close()
        await bystander.close()

    arun(body())


def test_three_refetching_tabs_reach_quiescence(gateway: GatewayProcess) -> None:
    """MET-3: tabs that refetch stats on every metrics_update (the seed portal) settle."""

    async def body() -> None:
        tenant = unique("loop")
        token = mint(tenant)
        tabs = [await connected(gateway.url, token) for _ in range(3)]
        fetches = 0

        async def portal(tab) -> None:
            nonlocal fetches
            while True:
                event, _ = await tab.events.get()
                if event in ("metrics_update", "new_message"):
                    fetches += 1
                    await asyncio.to_thread(gateway.request, "GET", STATS, token)

        workers = [asyncio.create_task(portal(t)) for t in tabs]
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            await pub.publish(new_message(tenant, "c1", "m1", new=True))
        # Quiescence: no fetch for 1.5 s, reached within 5 s.
        deadline = time.monotonic() + 5
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if fetches != last:
                last, quiet_since = fetches, time.monotonic()
            elif time.monotonic() - quiet_since > 1.5:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"still refetching after 5 s ({fetches} fetches)")
        for w in workers:
            w.cancel()
        assert fetches <= 3 * 3, fetches
        for t in tabs:
            await t.close()

    arun(body())


def test_new_conversation_is_followed_by_metrics_update(gateway: GatewayProcess) -> None:
    """MET-4: within 1 s, with fresh numbers."""

    async def body() -> None:
        tenant = unique("met4")
        tab = await connected(gateway.url, mint(tenant))
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            await pub.publish(new_message(tenant, "c-new", "m1", new=True))
            assert (await tab.next())[0] == "new_message"
            t0 = time.monotonic()
            event, data = await tab.next(timeout=1.0)
            assert event == "metrics_update" and time.monotonic() - t0 < 1.0
            assert data["activeConversations"] == 1
        await tab.close()

    arun(body())


def test_status_ranking_conversations_and_isolation(gateway: GatewayProcess) -> None:
    async def body() -> None:
        tenant, other = unique("stat"), unique("stat-other")
        token = mint(tenant)
        tab = await connected(gateway.url, token)
        orders = {
            "m-late-delivered": ["sent", "read", "delivered"],
            "m-skip": ["sent", "read"],
            "m-backwards": ["delivered", "sent"],
            "m-failed-final": ["read", "failed", "delivered", "read"],
            "m-failed-first": ["failed", "sent", "read"],
            "m-unseen": ["delivered"],
        }
        expected = {"m-late-delivered": "read", "m-skip": "read", "m-backwards": "delivered",
                    "m-failed-final": "failed", "m-failed-first": "failed", "m-unseen": "delivered"}
        published = []
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            await pub.publish(new_message(tenant, "c1", "m-in", ts="2026-11-28T10:00:00Z"))
            await pub.publish(conversation_update(tenant, "c1", "answer", "outbound", "2026-11-28T10:00:30Z"))
            for mid, statuses in orders.items():
                for st in statuses:
                    ev = status_update(tenant, "c1", mid, st)
                    await pub.publish(ev)
                    published.append(ev["data"])
            await pub.publish(new_message(other, "c-other", "m-other"))
        await tab.next("new_message")
        await tab.next("conversation_update")
        got = [(await tab.next("status_update"))[1] for _ in published]
        assert got == published  # STAT-1/STAT-3: publish order, conversationId carried
        status, msgs, _ = await asyncio.to_thread(gateway.request, "GET", "/api/conversations/c1/messages", token)
        assert status == 200
        by_id = {m["messageId"]: m for m in msgs}
        assert {k: by_id[k]["status"] for k in expected} == expected
        assert set(by_id["m-in"]) == {"messageId", "conversationId", "from", "from_name", "message",
                                      "media_url", "timestamp", "status"}
        assert by_id["m-in"]["message"] == "hi" and by_id["m-in"]["conversationId"] == "c1"
        status, convs, _ = await asyncio.to_thread(gateway.request, "GET", "/api/conversations", token)
        assert convs == [{"id": "c1", "conversationId": "c1", "lastMessage": "answer",
                          "lastMessageAt": "2026-11-28T10:00:30Z", "direction": "outbound"}]
        status, stats, _ = await asyncio.to_thread(gateway.request, "POST", REFRESH, token)
        assert stats["avgResponseTime"] == 30 and stats["waitingConversations"] == 0
        # ISO-4: the other tenant's conversation does not exist for this token.
        status, body404, _ = await asyncio.to_thread(gateway.request, "GET", "/api/conversations/c-other/messages", token)
        assert status == 404 and body404["code"] == "not_found"
        status, theirs, _ = await asyncio.to_thread(gateway.request, "GET", "/api/conversations/c-other/messages",
                                                    mint(other))
        assert status == 200 and [m["messageId"] for m in theirs] == ["m-other"]
        await tab.close()

    arun(body())


def test_rest_cors(gateway: GatewayProcess) -> None:
    token = mint(unique("cors"))
    status, _, headers = gateway.request("GET", STATS, token, headers={"Origin": "http://localhost:3014"})
    assert status == 200 and headers["access-control-allow-origin"] == "http://localhost:3014"
    status, _, headers = gateway.request("OPTIONS", STATS, headers={
        "Origin": "https://portal.example.com", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert status == 204 and headers["access-control-allow-origin"] == "https://portal.example.com"
    assert "authorization" in headers["access-control-allow-headers"].lower()
    for bad in ("http://localhost:3014.evil.com", "https://localhost:3014", "http://evil.localhost:3014"):
        status, body, headers = gateway.request("GET", STATS, token, headers={"Origin": bad})
        assert status == 403 and "access-control-allow-origin" not in headers, bad
