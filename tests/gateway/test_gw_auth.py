"""Handshake authentication: every refusal code, the query string ignored, and
ISO-2 (nothing a client sends widens what it receives). Each refused client is
also checked to receive nothing while a positive control of the same tenant does."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from gwkit import (Client, GatewayProcess, Publisher, arun, b64url, connected, mint, new_message,
                   refusal_code, unique)

CASES: list[tuple[str, Any, str]] = [
    ("no auth at all", None, "token_missing"),
    ("auth without token", {"tenantId": "x"}, "token_missing"),
    ("empty token", {"token": ""}, "token_missing"),
    ("garbage token", {"token": "not-a-jwt"}, "token_invalid"),
    ("expired", "EXPIRED", "token_expired"),
    ("not yet valid", "NBF", "token_not_yet_valid"),
    ("other secret", "OTHER_SECRET", "token_invalid"),
    ("tampered payload", "TAMPERED", "token_invalid"),
    ("alg none", "NONE", "token_algorithm"),
    ("other algorithm HS512", "HS512", "token_algorithm"),
    ("no tenant claim", "NO_TENANT", "tenant_missing"),
    ("empty tenant", "EMPTY_TENANT", "tenant_missing"),
    ("tenant not a string", "NUMERIC_TENANT", "tenant_missing"),
]


def _auth_for(kind: Any, tenant: str) -> Any:
    if not isinstance(kind, str):
        return kind
    token = {
        "EXPIRED": lambda: mint(tenant, exp_in=-1),
        "NBF": lambda: mint(tenant, extra={"nbf": int(time.time()) + 60}),
        "OTHER_SECRET": lambda: mint(tenant, secret="another-secret-of-sufficient-length-000"),
        "NONE": lambda: mint(tenant, alg="none"),
        "HS512": lambda: mint(tenant, alg="HS512"),
        "NO_TENANT": lambda: mint(tenant, drop_tenant=True),
        "EMPTY_TENANT": lambda: mint(""),
        "NUMERIC_TENANT": lambda: mint(12345),
    }
    if kind == "TAMPERED":
        head, _, sig = mint("someone-else").split(".")
        body = b64url(json.dumps({"tenantId": tenant, "exp": int(time.time()) + 300}).encode())
        return {"token": f"{head}.{body}.{sig}"}
    return {"token": token[kind]()}


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_each_refusal_code_and_refused_clients_get_nothing(gateway: GatewayProcess, transport: str) -> None:
    async def body() -> None:
        tenant = unique("auth")
        control = await connected(gateway.url, mint(tenant), transports=[transport])
        refused: list[Client] = []
        for name, kind, code in CASES:
            client = Client()
            ok = await client.connect(gateway.url, auth=_auth_for(kind, tenant), transports=[transport])
            assert not ok, f"{name}: accepted"
            assert refusal_code(client.refusal) == code, f"{name}: {client.refusal!r}"
            assert client.refusal["message"], name
            refused.append(client)
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            await pub.publish(new_message(tenant, "c1", "m1"))
        assert (await control.next("new_message"))[1]["messageId"] == "m1"
        await control.close()
        assert all(not c.received for c in refused)

    arun(body())


def test_token_in_query_string_only_is_refused_as_missing(gateway: GatewayProcess) -> None:
    async def body() -> None:
        client = Client()
        ok = await client.connect(gateway.url, query=f"?token={mint('q-tenant')}", auth=None)
        assert not ok
        assert refusal_code(client.refusal) == "token_missing"

    arun(body())


def test_expired_then_fresh_token_is_accepted(gateway: GatewayProcess) -> None:
    async def body() -> None:
        tenant = unique("refresh")
        stale = Client()
        assert not await stale.connect(gateway.url, auth={"token": mint(tenant, exp_in=-5)})
        assert refusal_code(stale.refusal) == "token_expired"
        fresh = await connected(gateway.url, mint(tenant))
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            await pub.publish(new_message(tenant, "c", "after-refresh"))
        assert (await fresh.next("new_message"))[1]["messageId"] == "after-refresh"
        await fresh.close()

    arun(body())


def test_client_cannot_widen_its_rooms(gateway: GatewayProcess) -> None:
    """auth.tenantId, the query string and join/subscribe emits change nothing (ISO-2)."""

    async def body() -> None:
        mine, victim = unique("mine"), unique("victim")
        victim_client = await connected(gateway.url, mint(victim))
        attacker = Client()
        ok = await attacker.connect(gateway.url, auth={"token": mint(mine), "tenantId": victim, "room": f"tenant:{victim}"},
                                    query=f"?tenantId={victim}&room=tenant:{victim}")
        assert ok
        for event in ("join", "subscribe", "join_room", "enter_room"):
            for arg in (victim, f"tenant:{victim}", {"room": f"tenant:{victim}", "tenantId": victim}):
                await attacker.sio.emit(event, arg)
        async with Publisher(gateway.env["RABBITMQ_URL"], gateway.queue) as pub:
            await pub.publish(new_message(victim, "c", "secret"))
            await pub.publish(new_message(mine, "c", "own"))
        assert (await victim_client.next("new_message"))[1]["messageId"] == "secret"
        assert (await attacker.next("new_message"))[1]["messageId"] == "own"
        assert all(data.get("messageId") != "secret" for _, data in attacker.received)
        await attacker.close()
        await victim_client.close()

    arun(body())
