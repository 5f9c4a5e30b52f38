"""ISO: a tenant sees its own events only, whatever the interleaving, the tenant ids, or the client's tricks."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from realtime_conformance.harness import strategies
from realtime_conformance.harness import RestClient
from realtime_conformance.harness.samples import new_message
from ._support import planned

# Every suite test is an end-to-end check, and async whatever the project's asyncio_mode.
pytestmark = [pytest.mark.realtime, pytest.mark.asyncio]

JOIN_EVENTS = ("join", "subscribe", "join_room", "joinRoom", "room:join", "tenant:join")


@pytest.mark.requirement("ISO-1")
@given(plan=strategies.plans(max_tenants=5, max_tabs=3, max_events=30))
async def test_no_event_reaches_another_tenant(conformance, plan):
    async with planned(conformance, plan) as sc:
        conformance.judge(sc)


ISO_VOLUME_TENANTS, ISO_VOLUME_EVENTS = 4, 240


@pytest.mark.requirement("ISO-1")
async def test_no_leak_over_many_events(conformance):
    """A leak of a few percent of emits shows here in any profile: many events, every tenant watching."""
    async with conformance.scenario() as sc:
        tenants = [sc.tenant("iso") for _ in range(ISO_VOLUME_TENANTS)]
        for tenant in tenants:
            await sc.connect(tenant, tabs=2)
        for n in range(ISO_VOLUME_EVENTS):
            await sc.publish_control(tenants[n % ISO_VOLUME_TENANTS], n)
        await sc.settle()
        emitted = len(sc.publishes)
        conformance.record("events_checked", emitted)
        conformance.record("clients_watching", len(sc.clients))
        # Each event reaches every client of the other tenants if it leaks, so a leak of rate p
        # per emit goes unseen only if none of the events leaked.
        conformance.record("chance_unseen", {f"leak rate {p:g}": f"{(1 - p) ** emitted:.2g}" for p in (0.01, 0.02, 0.05)})
        conformance.judge(sc)


def foreign_seqs(findings, names) -> set[int]:
    return {f.example["seq"] for f in findings if f.client in names}


def judged(findings) -> list:
    """Foreign deliveries of the events a differential check compares: not the last settle's
    barriers, whose copies may still be on their way to one client when another has its own."""
    return [f for f in findings if not f.example.get("barrier")]


@pytest.mark.requirement("ISO-2")
async def test_client_cannot_widen_what_it_receives(conformance):
    async with conformance.scenario() as sc:
        victim, attacker = sc.tenant("victim"), sc.tenant("attacker")
        await sc.connect(victim)
        token = conformance.tokens.valid(attacker)
        tricks = [
            sc.client(attacker, name=f"{attacker}/auth-names-victim",
                      auth={"token": token, "tenantId": victim, "tenant": victim, "room": f"tenant:{victim}"}),
            sc.client(attacker, name=f"{attacker}/query-names-victim", token=token,
                      query=f"tenantId={victim}&tenant={victim}&room=tenant:{victim}"),
            sc.client(attacker, name=f"{attacker}/emits-joins", token=token),
        ]
        plain = sc.client(attacker, name=f"{attacker}/no-tricks", token=token)  # what the attacker gets anyway
        for c in [*tricks, plain]:
            if not await c.connect():
                conformance.unknown(f"{c.name} with a valid token was refused; nothing to judge")
        for event in JOIN_EVENTS:
            for arg in (victim, f"tenant:{victim}", {"tenantId": victim, "room": f"tenant:{victim}"}):
                await tricks[2].emit(event, arg)
        await sc.publish(victim, "new_message", new_message("conv_secret", "wamid.secret", "victim's secret"))
        await sc.publish_control(attacker, 3)
        await sc.settle()
        # The join requests raced the first event; after a settle's round trips they have surely
        # been handled, so a second event shows whether they widened anything.
        await sc.publish(victim, "new_message", new_message("conv_secret", "wamid.secret.2", "victim's second"))
        await sc.settle()
        conformance.record("join_events_tried", list(JOIN_EVENTS))
        result = conformance.controls(sc)
        # Widening is what a trick adds: another tenant's events that the same tenant's client
        # without tricks did not get (a gateway that leaks to everyone is ISO-1's finding).
        foreign = judged(result.of("foreign"))
        baseline = foreign_seqs(foreign, {plain.name})
        conformance.record("foreign_events_without_tricks", sorted(baseline))
        conformance.record("foreign_events_with_tricks", {c.name: sorted(foreign_seqs(foreign, {c.name})) for c in tricks})
        conformance.fail(f.as_violation("ISO-2") for f in foreign
                         if f.client in {c.name for c in tricks} and f.example["seq"] not in baseline)


TRICKY_PAIRS = [("a:b", "a"), ("tenant:x", "x"), ("*", "t_abc123"), ("#", "t_abc124"), ("租户-1", "租户-2")]


@pytest.mark.requirement("ISO-3")
@given(generated=st.lists(strategies.tenant_ids(), min_size=2, max_size=4, unique=True))
async def test_room_like_tenant_ids_stay_isolated(conformance, generated):
    async with conformance.scenario() as sc:
        plain = [sc.tenant("plain"), sc.tenant("plain")]  # ordinary ids: what any tenant gets anyway
        ids = list(dict.fromkeys([t for pair in TRICKY_PAIRS for t in pair] + generated)) + plain
        for tenant in ids:
            await sc.connect(tenant)
        for n, tenant in enumerate(ids):
            await sc.publish_control(tenant, n)
        await sc.settle()
        conformance.record("tenant_ids", len(ids))
        result = conformance.controls(sc)
        # A room-like id is not isolated when its events reach a room-like neighbour while the
        # ordinary tenants did not see them (a leak to everyone is ISO-1's finding).
        plain_names = {c.name for c in sc.clients if c.tenant in plain}
        foreign = judged(result.of("foreign"))
        everywhere = foreign_seqs(foreign, plain_names)
        conformance.fail(f.as_violation("ISO-3") for f in foreign
                         if f.client not in plain_names and f.example["seq"] not in everywhere)


@pytest.mark.requirement("ISO-4")
async def test_rest_serves_only_the_tokens_tenant(conformance):
    conformance.require("rest")
    conformance.require("event-read-model", "its positive control is a conversation a published event creates, "
                        "so without it a refusal proves nothing (a known blind spot)")
    async with conformance.scenario() as sc, RestClient(conformance.main.url, conformance.settings.rest_paths) as rest:
        owner, other = sc.tenant("owner"), sc.tenant("other")
        await sc.connect(owner)
        conv = f"conv_iso_{owner}"
        await sc.publish(owner, "new_message", new_message(conv, f"wamid.iso.{owner}", "owner only"))
        await sc.settle()
        owner_token, other_token = conformance.tokens.valid(owner), conformance.tokens.valid(other)
        status, mine = await rest.conversations(owner_token)
        if status != 200 or conv not in str(mine):
            conformance.unknown(f"positive control: the owner's conversation list ({status}) does not show {conv}")
        violations = []
        status, theirs = await rest.conversations(other_token)
        if conv in str(theirs):
            violations.append(conformance.violation("Another tenant's conversation listed",
                                                    f"GET conversations as {other} lists {conv}", {"body": theirs}))
        status, messages = await rest.messages(other_token, conv)
        if status == 200 and "owner only" in str(messages):
            violations.append(conformance.violation("Another tenant's messages served",
                                                    f"GET messages of {conv} as {other} returned them", {"body": messages}))
        conformance.record("cross_tenant_messages_status", status)
        conformance.fail(violations)
