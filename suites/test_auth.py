"""AUTH: only a valid, unexpired, correctly signed token with a tenant claim gets in."""

from __future__ import annotations

import json

import pytest

from realtime_conformance.harness import HandshakeFailed, RawWebSocket, http_request, refusal_code, unique_tenant

from ._support import control_client, expect_refused

# Every suite test is an end-to-end check, and async whatever the project's asyncio_mode.
pytestmark = [pytest.mark.realtime, pytest.mark.asyncio]


@pytest.mark.requirement("AUTH-1")
async def test_valid_token_joins_its_tenant_room(conformance):
    async with conformance.scenario() as sc:
        mine, other = sc.tenant(), sc.tenant()
        client = sc.client(mine)
        if not await client.connect():
            conformance.fail([conformance.violation(
                "Valid token refused", "a token signed with the shared secret, unexpired, with the tenant claim "
                "and the configured extra claims, was not accepted",
                {"connect_errors": [e.data for e in client.connect_errors], "claims": conformance.tokens.claims(mine)})])
        await sc.connect(other)
        await sc.publish_control(mine, 1)
        await sc.publish_control(other, 2)
        await sc.settle()
        # Accepted and in its own room: it receives its tenant's events (leaks are ISO-1's business).
        conformance.judge(sc, "missing")


@pytest.mark.requirement("AUTH-2")
async def test_no_token_is_refused(conformance):
    async with conformance.scenario() as sc:
        await expect_refused(conformance, sc, sc.tenant(), label="no token", auth={})


@pytest.mark.requirement("AUTH-2")
async def test_no_auth_at_all_is_refused(conformance):
    async with conformance.scenario() as sc:
        await expect_refused(conformance, sc, sc.tenant(), label="no auth object", token=None)


@pytest.mark.requirement("AUTH-3")
async def test_expired_token_is_refused(conformance):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        await expect_refused(conformance, sc, tenant, label="expired token", token=conformance.tokens.expired(tenant))


@pytest.mark.requirement("AUTH-4")
@pytest.mark.parametrize("kind", ["wrong secret", "tampered payload"])
async def test_forged_token_is_refused(conformance, kind):
    async with conformance.scenario() as sc:
        tenant, victim = sc.tenant(), sc.tenant("victim")
        token = (conformance.tokens.wrong_secret(tenant) if kind == "wrong secret"
                 else conformance.tokens.tampered(tenant, to_tenant=victim))
        await control_client(conformance, sc, victim)
        await expect_refused(conformance, sc, tenant, label=kind, token=token)


@pytest.mark.requirement("AUTH-5")
@pytest.mark.parametrize("kind", ["alg none", "other algorithm"])
async def test_unsigned_or_other_algorithm_is_refused(conformance, kind):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        token = conformance.tokens.unsigned(tenant) if kind == "alg none" else conformance.tokens.other_algorithm(tenant)
        await expect_refused(conformance, sc, tenant, label=kind, token=token)


@pytest.mark.requirement("AUTH-6")
@pytest.mark.parametrize("kind", ["no tenant claim", "empty tenant claim"])
async def test_token_without_tenant_is_refused(conformance, kind):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        token = conformance.tokens.without_tenant() if kind == "no tenant claim" else conformance.tokens.empty_tenant()
        await expect_refused(conformance, sc, tenant, label=kind, token=token)


@pytest.mark.requirement("AUTH-9")
async def test_token_in_query_string_is_not_accepted(conformance):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        token = conformance.tokens.valid(tenant)
        await expect_refused(conformance, sc, tenant, label="token in query string", token=None,
                             query=f"token={token}", need_connect_error=False)


@pytest.mark.requirement("AUTH-10")
async def test_not_yet_valid_token_is_refused(conformance):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        await expect_refused(conformance, sc, tenant, label="nbf in the future",
                             token=conformance.tokens.not_yet_valid(tenant))


@pytest.mark.requirement("AUTH-11")
async def test_refusals_carry_a_machine_readable_code(conformance):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        await control_client(conformance, sc, tenant)
        cases = {"expired": conformance.tokens.expired(tenant), "missing": None,
                 "forged": conformance.tokens.wrong_secret(tenant)}
        codes, raw, violations = {}, {}, []
        for label, token in cases.items():
            c = sc.client(tenant, name=f"{tenant}/{label}", token=token, expects_events=False)
            if await c.connect():
                conformance.unknown(f"the {label} token was accepted, so its refusal reason cannot be judged (see AUTH-2..4)")
            data = c.connect_errors[-1].data if c.connect_errors else None
            raw[label] = data
            codes[label] = code = refusal_code(data)
            if code is None:
                violations.append(conformance.violation(
                    "Refusal without a machine-readable code",
                    f"refusing a {label} token, connect_error carried {data!r}; expected a string code in "
                    "data.code (socket.io's err.data) or at the top level", {"connect_error": data}, severity="medium"))
        conformance.record("codes", codes)
        conformance.record("connect_error_payloads", raw)
        if codes.get("expired") and codes.get("expired") == codes.get("forged"):
            violations.append(conformance.violation(
                "Expired and forged tokens share one code",
                f"both refused with {codes['expired']!r}: a portal cannot tell 'refresh your token' from 'forged'",
                {"codes": codes}, severity="medium"))
        conformance.fail(violations)


MID_UPGRADE_POLLS = 2  # socket.io-client polls again at once after an empty answer, while its probe is open
MID_UPGRADE_WAIT_S = 5.0  # each poll and each step of the probe


def _eio_packets(body: str) -> list[str]:
    """Engine.IO 4 polling payload: packets joined by the record separator."""
    return [p for p in body.split("\x1e") if p]


@pytest.mark.requirement("AUTH-11")
async def test_a_refusal_reaches_a_client_that_is_upgrading(conformance):
    """socket.io-client opens its WebSocket probe as soon as the polling handshake is done, so the refusal
    of its CONNECT may find an upgrade under way. The refusal must still reach it, by a poll or over the
    upgraded WebSocket; a poll answered with an error before that ends the real client's transport, so it
    never reads the reason and retries blindly (seen in Chromium: "xhr poll error", HTTP 400, forever)."""
    settings, url = conformance.settings, conformance.main.url
    path, origins = settings.socketio_path, settings.allowed_origin_examples
    headers = {"Origin": origins[0]} if origins else {}
    opened = await http_request(url, "GET", f"{path}?EIO=4&transport=polling", headers=headers,
                                timeout=MID_UPGRADE_WAIT_S)
    packets = _eio_packets(opened.text) if opened.status == 200 else []
    if not packets or not packets[0].startswith("0"):
        conformance.unknown(f"the polling handshake got {opened.describe()} {opened.text[:120]!r}: see CONN-2")
    handshake = json.loads(packets[0][1:])
    sid = handshake.get("sid")
    if "websocket" not in handshake.get("upgrades", []):
        pytest.skip("N/A: the gateway offers no upgrade from polling, so no client polls while upgrading")
    conformance.record("handshake", {k: handshake.get(k) for k in ("upgrades", "pingInterval", "pingTimeout")})
    query = f"EIO=4&transport=polling&sid={sid}"
    try:
        probe = await RawWebSocket.open(url, path=path, query=f"EIO=4&transport=websocket&sid={sid}",
                                        headers=headers, timeout=MID_UPGRADE_WAIT_S, read_open=False)
    except (HandshakeFailed, OSError, TimeoutError) as exc:
        conformance.unknown(f"the WebSocket upgrade of a polling session failed ({exc}): see CONN-2")
    steps: list[str] = ["polling handshake", "WebSocket opened for the upgrade"]
    try:
        token = conformance.tokens.expired(unique_tenant("upgrading"))
        sent = await http_request(url, "POST", f"{path}?{query}", headers={**headers, "Content-Type":
                                  "text/plain;charset=UTF-8"}, body=("40" + json.dumps({"token": token})).encode(),
                                  timeout=MID_UPGRADE_WAIT_S)
        steps.append(f"POST CONNECT with an expired token: {sent.describe()}")
        for n in range(1, MID_UPGRADE_POLLS + 1):
            got = await http_request(url, "GET", f"{path}?{query}", headers=headers, timeout=MID_UPGRADE_WAIT_S)
            answer = _eio_packets(got.text) if got.status == 200 else []
            steps.append(f"poll {n}: {got.describe()} {got.text[:100]!r}")
            if any(p.startswith("44") for p in answer):
                conformance.record("steps", steps)
                return  # read by a poll
            if any(p.startswith("40") for p in answer):
                conformance.record("steps", steps)
                conformance.unknown("the expired token was accepted (see AUTH-3): no refusal to deliver")
            if got.status != 200:
                conformance.record("steps", steps)
                conformance.fail([conformance.violation(
                    "Refusal lost to an upgrade", f"poll {n} after the refused CONNECT was answered {got.describe()} "
                    f"before the client had read the refusal, while its WebSocket upgrade was under way; "
                    "socket.io-client ends its transport on that answer ('xhr poll error'), never reads the reason "
                    "and retries blindly", {"steps": steps, "answer": got.text[:300]})])
        await probe.send_text("2probe")
        pong = await probe.recv_until(lambda f: f.text == "3probe", MID_UPGRADE_WAIT_S)
        steps.append(f"probe: {'3probe' if pong else 'no 3probe'}")
        if pong is not None:
            await probe.send_text("5")
        refusal = await probe.recv_until(lambda f: f.text.startswith("44"), MID_UPGRADE_WAIT_S) if pong else None
        steps.append(f"after the upgrade: {refusal.text[:100] if refusal else 'no refusal'}")
        conformance.record("steps", steps)
        if refusal is None:
            conformance.fail([conformance.violation(
                "Refusal lost to an upgrade", "the refused CONNECT's answer never reached the client, by a poll or "
                "over the WebSocket it was upgrading to", {"steps": steps})])
    finally:
        probe.abort()


@pytest.mark.requirement("AUTH-7")
async def test_refused_expired_client_reconnects_with_a_fresh_token(conformance):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        fresh = {"token": conformance.tokens.expired(tenant)}
        client = sc.client(tenant, token=lambda: fresh["token"])
        if await client.connect():
            conformance.unknown("the expired token was accepted (see AUTH-3); a refresh cannot be observed")
        refusal = client.connect_errors[-1].data if client.connect_errors else None
        conformance.record("first refusal", refusal)
        fresh["token"] = conformance.tokens.valid(tenant)  # the portal refreshes its token, then reconnects
        if not await client.connect():
            conformance.fail([conformance.violation(
                "Fresh token refused after an expired one",
                "the same client, reconnecting with a fresh token, was not connected",
                {"connect_errors": [e.data for e in client.connect_errors]})])
        await sc.publish_control(tenant, 7)
        await sc.settle()
        conformance.judge(sc, "missing")


@pytest.mark.requirement("AUTH-8")
async def test_connection_ends_when_its_token_expires(conformance):
    import time

    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        ttl = 3
        token = conformance.tokens.valid(tenant, ttl_s=ttl)
        exp = int(time.time() + ttl)  # the token's exp, as signed (whole seconds)
        client = sc.client(tenant, token=token)
        if not await client.connect():
            conformance.unknown("a token valid for 3 s was refused; expiry while connected cannot be observed")
        await sc.publish_control(tenant, 1)
        await sc.settle(barrier=False)
        if not client.received:
            conformance.unknown("positive control: the client received nothing before its token expired")
        limit = exp + 5 - time.time()
        ended = await client.wait_for(lambda c: bool(c.disconnected_at), timeout=max(limit, 0.1))
        if ended:
            conformance.record("disconnected_after_exp_s", round(time.time() - exp, 2))
            return
        before = len(client.received)
        late = await sc.publish_control(tenant, 2)
        got = await client.wait_for(lambda c: len(c.received) > before, timeout=sc.grace_s)
        conformance.record("still_connected_at_exp_plus_5s", True)
        if got:
            conformance.fail([conformance.violation(
                "Expired connection still receives events",
                f"the connection outlived its token by over 5 s and still received {late.type}",
                {"exp": exp, "published": late.envelope}, severity="medium")])


@pytest.mark.requirement("AUTH-12")
async def test_expired_token_does_not_resume_its_session(conformance):
    """The link drops while the token is still valid; the token then expires, an event is
    published, and the client reconnects as socket.io-client would: the same (now expired)
    token plus the session id and offset the gateway gave it. Without recovery this is an
    expired token like any other; with recovery, the session must not be resumed, and its
    missed events must not be replayed even ahead of the refusal (socket.io writes them while
    it builds the socket, before its middlewares run)."""
    import asyncio
    import time
    from urllib.parse import urlsplit

    from realtime_conformance.harness import FaultProxy

    gateway = urlsplit(conformance.main.url)
    async with FaultProxy(gateway.hostname, gateway.port) as proxy, conformance.scenario() as sc:
        tenant = sc.tenant()
        ttl = 4
        exp_at_most = int(time.time() + ttl) + 1  # the signed exp, whole seconds, is at most this
        client = sc.client(tenant, name=f"{tenant}/expiring", token=conformance.tokens.valid(tenant, ttl_s=ttl),
                           url=proxy.url_for("http"), expects_events=False)
        if not await client.connect():
            conformance.unknown("a token valid for 4 s was refused; there is no session to resume")
        first = await sc.publish_control(tenant, 1)
        if not await client.wait_for(lambda c: sc.delivered(c, first), sc.grace_s):
            conformance.unknown("positive control: the client received nothing before the cut")
        proxy.cut()  # the gateway sees the transport close: a session it may keep for recovery
        if not await client.wait_for(lambda c: bool(c.disconnected_at), timeout=5):
            conformance.unknown("the client did not notice the cut within 5 s")
        if time.time() >= exp_at_most - 1:
            conformance.unknown("the token was about to expire before the link was cut (a slow machine?); "
                                "the gateway may have ended the connection itself")
        session = {"pid": client.recovery.pid is not None, "offset": client.recovery.offset is not None}
        conformance.record("gateway offered recovery (pid, offset)", session)
        await asyncio.sleep(max(0.0, exp_at_most + 1.0 - time.time()))  # the token's life is the condition
        # A fresh direct client shows the gap event was emitted; connected only now, so whatever the
        # gateway did when the cut client went away (closing a tab is TAB-2's business) cannot touch it.
        (control,) = await sc.connect(tenant)
        gap = await sc.publish_control(tenant, 2)
        if not await control.wait_for(lambda c: sc.delivered(c, gap), sc.grace_s):
            conformance.unknown("positive control: the event published during the cut reached no client")
        received_before, connects_before = len(client.received), len(client.connected_at)
        proxy.pass_through()
        await client.connect(timeout=5)
        await sc.publish_control(tenant, 3)
        await sc.settle()  # anything late to the expired client has had its chance to arrive
        accepted = len(client.connected_at) > connects_before
        got = [(r.event, r.data) for r in client.received[received_before:]]
        withheld = [(w.event, w.args) for w in client.withheld]
        conformance.record("reconnect", {"accepted": accepted, "recovered": client.recovered,
                                         "connect_error": client.connect_errors[-1].data if client.connect_errors else None,
                                         "events_after_cut": len(got), "sent_before_refusal": len(withheld)})
        violations = []
        if accepted:
            violations.append(conformance.violation(
                "Expired token resumed its session" if client.recovered else "Expired token accepted on reconnect",
                f"reconnecting with a token that expired at most {time.time() - exp_at_most + 1:.1f} s ago"
                f"{' and its session id and offset' if session['pid'] else ''}, the client was connected"
                f"{' and its session resumed' if client.recovered else ''}", {"presented": session}))
        if got or withheld:
            first_seen = (got or withheld)[0]
            violations.append(conformance.violation(
                "Events sent to an expired token",
                f"{len(got)} event(s) delivered and {len(withheld)} written ahead of the refusal to a client "
                "whose token had expired", {"first": {"event": first_seen[0], "data": first_seen[1]},
                                            "gap_event": gap.envelope}))
        conformance.fail(violations)
