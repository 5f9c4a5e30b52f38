"""REST-2: the REST API checks tokens exactly like the handshake does."""

from __future__ import annotations

import pytest

from realtime_conformance.harness import RestClient

# Every suite test is an end-to-end check, and async whatever the project's asyncio_mode.
pytestmark = [pytest.mark.realtime, pytest.mark.asyncio]


@pytest.mark.requirement("REST-2")
async def test_rest_refuses_bad_tokens_with_401(conformance):
    conformance.require("rest")
    tenant = "rest-probe"
    t = conformance.tokens
    bad = {"missing": None, "expired": t.expired(tenant), "forged": t.wrong_secret(tenant),
           "unsigned": t.unsigned(tenant), "other algorithm": t.other_algorithm(tenant),
           "no tenant": t.without_tenant()}
    async with RestClient(conformance.main.url, conformance.settings.rest_paths) as rest:
        endpoints = {"GET stats": rest.stats, "GET conversations": rest.conversations}
        for name, call in endpoints.items():
            status, body = await call(t.valid(tenant))
            if status != 200:
                conformance.unknown(f"positive control: {name} with a valid token answered {status}, not 200")
        violations, seen = [], {}
        for name, call in endpoints.items():
            for label, token in bad.items():
                status, body = await call(token)
                seen[f"{name} / {label}"] = status
                if status != 401:
                    violations.append(conformance.violation(
                        f"{label} token not refused with 401", f"{name} answered {status}",
                        {"endpoint": name, "token_kind": label, "status": status, "body": body}))
        conformance.record("statuses", seen)
        conformance.fail(violations)


@pytest.mark.requirement("REST-1")
async def test_manual_refresh_works_while_the_socket_is_down(conformance):
    import asyncio
    import time

    from realtime_conformance.harness.samples import new_message

    conformance.require("rest")
    conformance.require("event-read-model", "it looks for a published event in REST's answers")
    async with conformance.scenario() as sc, RestClient(conformance.main.url, conformance.settings.rest_paths) as rest:
        tenant = sc.tenant()
        (client,) = await sc.connect(tenant)
        await client.close()  # the socket is down; the portal shows its warning
        conv, mid = f"conv_down_{tenant}", f"wamid.down.{tenant}"
        await sc.publish(tenant, "new_message", new_message(conv, mid, "sent while you were away"))
        token = conformance.tokens.valid(tenant)
        deadline, seen = time.monotonic() + sc.grace_s, {}
        while time.monotonic() < deadline:  # bounded: the gateway consumes, then the read model shows it
            seen = {"conversations": await rest.conversations(token), "messages": await rest.messages(token, conv),
                    "stats": await rest.stats(token)}
            if all(code == 200 for code, _ in seen.values()) and mid in str(seen["messages"][1]) and conv in str(seen["conversations"][1]):
                break
            await asyncio.sleep(0.1)
        conformance.record("statuses", {k: v[0] for k, v in seen.items()})
        violations = [conformance.violation(f"{k} did not answer 200", f"answered {code}", {"body": body})
                      for k, (code, body) in seen.items() if code != 200]
        if not violations and mid not in str(seen["messages"][1]):
            violations.append(conformance.violation("Refresh misses the event", f"{mid} not in GET messages",
                                                    {"body": seen["messages"][1]}))
        if not violations and conv not in str(seen["conversations"][1]):
            violations.append(conformance.violation("Refresh misses the conversation", f"{conv} not listed",
                                                    {"body": seen["conversations"][1]}))
        conformance.fail(violations)


@pytest.mark.requirement("REST-3")
async def test_read_model_survives_a_gateway_restart(conformance):
    """What was published before a restart, and while the gateway was down, is served after it."""
    import asyncio
    import time

    from realtime_conformance.harness.samples import new_message

    conformance.require("rest")
    conformance.require("event-read-model", "it looks for published events in REST's answers")
    conformance.require("restart")
    async with conformance.target.dedicated("rest1") as instance, instance.scenario() as sc:
        tenant = sc.tenant()
        await sc.connect(tenant)
        conv = f"conv_restart_{tenant}"
        before = await sc.publish(tenant, "new_message", new_message(conv, f"wamid.before.{tenant}", "before the restart"))
        await sc.settle(barrier=False)
        await instance.stop()  # every socket is down now
        during = await sc.publish(tenant, "new_message", new_message(conv, f"wamid.during.{tenant}", "while it was down"))
        await asyncio.to_thread(instance.gateway.start)
        await conformance.precondition_consuming(instance, after="its restart", blocked_by="RECON-1",
                                                 timeout=conformance.settings.gateway_startup_timeout)
        token = conformance.tokens.valid(tenant)
        wanted = [before.data["messageId"], during.data["messageId"]]
        async with RestClient(instance.url, conformance.settings.rest_paths) as rest:
            deadline, code, body = time.monotonic() + 10 + sc.grace_s, None, None
            while time.monotonic() < deadline:  # bounded: the backlog is consumed after start-up
                code, body = await rest.messages(token, conv)
                if code == 200 and all(w in str(body) for w in wanted):
                    break
                await asyncio.sleep(0.2)
        missing = [w for w in wanted if w not in str(body)]
        conformance.record("after_restart", {"status": code, "missing": missing})
        conformance.fail([conformance.violation(
            "Refresh after restart misses events", f"GET messages answered {code} without {missing}",
            {"body": body})] if code != 200 or missing else [])
