"""STAT: message status updates reach the tenant in order, naming their conversation."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import example, given, strategies as st

from realtime_conformance.harness import strategies
from realtime_conformance.harness.samples import status

# Every suite test is an end-to-end check, and async whatever the project's asyncio_mode.
pytestmark = [pytest.mark.realtime, pytest.mark.asyncio]

FIELDS = ("messageId", "conversationId", "status", "timestamp")


def fields(data) -> tuple:
    return tuple(data.get(f) for f in FIELDS) if isinstance(data, dict) else (None,) * len(FIELDS)


def distinct(sc, received) -> list:
    """Each published event once (duplicates are DLV-4's finding); unrecognisable ones as they came."""
    seen, out = set(), []
    for r in received:
        p = sc.published_as(r.data)
        if p is not None and p.seq in seen:
            continue
        if p is not None:
            seen.add(p.seq)
        out.append(r)
    return out


@pytest.mark.requirement("STAT-1")
@given(flow=st.lists(st.sampled_from(strategies.STATUSES), min_size=1, max_size=6))
async def test_status_updates_arrive_in_order_with_their_fields(conformance, flow):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        (client,) = await sc.connect(tenant)
        for value in flow:
            await sc.publish(tenant, "status_update", status("conv_stat", f"wamid.stat.{tenant}", value))
        await sc.settle()
        received = distinct(sc, client.events_named("status_update"))
        lacking = [r.data for r in received if not isinstance(r.data, dict) or any(not r.data.get(f) for f in FIELDS)]
        conformance.fail([conformance.violation("status_update lacks a field", f"received {m!r}; needs {FIELDS}",
                                                {"received": m}) for m in lacking[:3]])
        # What the portal shows is these four fields, in this order: they must be what was published.
        published = [fields(p.data) for p in sc.publishes if p.type == "status_update"]
        got = [fields(r.data) for r in received]
        conformance.record("statuses_published", [f[2] for f in published])
        conformance.record("statuses_received", [f[2] for f in got])
        if got != published:
            conformance.fail([conformance.violation(
                "Status updates not as published, in order",
                f"published statuses {[f[2] for f in published]}, the client received {[f[2] for f in got]}"
                + ("" if len(got) != len(published) or [f[2] for f in got] != [f[2] for f in published]
                   else " (same statuses, other field values)"),
                {"published": published, "received": got})])


@pytest.mark.requirement("STAT-3")
@given(batch=st.lists(strategies.status_update(), min_size=1, max_size=6))
async def test_every_status_update_names_its_conversation(conformance, batch):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        (client,) = await sc.connect(tenant)
        for data in batch:
            await sc.publish(tenant, "status_update", data)
        await sc.settle()
        if not client.events_named("status_update"):
            conformance.unknown("no status_update reached the client, so what they name cannot be judged "
                                "(see DLV-6 and DLV-1)")
        violations = []
        for r in client.events_named("status_update"):
            got = r.data.get("conversationId") if isinstance(r.data, dict) else None
            if not isinstance(got, str) or not got:
                violations.append(conformance.violation(
                    "status_update without its conversationId",
                    f"received a status_update with conversationId {got!r}; the portal cannot invalidate "
                    "['conversation-messages', conversationId]", {"received": r.data}))
            else:
                p = sc.published_as(r.data)
                if p is not None and got != p.data.get("conversationId"):
                    violations.append(conformance.violation(
                        "status_update names another conversation",
                        f"published for {p.data.get('conversationId')!r}, received with {got!r}", {"received": r.data}))
        conformance.fail(violations[:5])


RANK = {"sent": 1, "delivered": 2, "read": 3}


def furthest(flow) -> str:
    """The status the portal must show: failed is final, otherwise the highest rank reached."""
    return "failed" if "failed" in flow else max(flow, key=RANK.__getitem__)


@pytest.mark.requirement("STAT-2")
@given(flow=st.lists(st.sampled_from(strategies.STATUSES), min_size=1, max_size=5))
@example(flow=["sent", "read", "delivered"])  # a late delivered after read changes nothing
@example(flow=["delivered", "failed", "read"])  # failed is final
async def test_messages_endpoint_shows_the_furthest_status(conformance, flow):
    import time

    from realtime_conformance.harness import RestClient
    from realtime_conformance.harness.samples import new_message

    conformance.require("rest")
    conformance.require("event-read-model", "it reads published statuses back from REST")
    async with conformance.scenario() as sc, RestClient(conformance.main.url, conformance.settings.rest_paths) as rest:
        tenant = sc.tenant()
        await sc.connect(tenant)
        conv, mid = f"conv_{tenant}", f"wamid.stat2.{tenant}"
        await sc.publish(tenant, "new_message", new_message(conv, mid, "status flow"))
        for value in flow:
            await sc.publish(tenant, "status_update", status(conv, mid, value))
        await sc.settle()
        expected, shown, body = furthest(flow), None, None
        token = conformance.tokens.valid(tenant)
        deadline = time.monotonic() + sc.grace_s
        while time.monotonic() < deadline:  # the read model may trail the emit a little: bounded re-reads
            code, body = await rest.messages(token, conv)
            rows = body if isinstance(body, list) else (body or {}).get("messages", []) if isinstance(body, dict) else []
            shown = next((r.get("status") for r in rows if isinstance(r, dict) and r.get("messageId") == mid), None)
            if shown == expected:
                break
            await asyncio.sleep(0.1)
        conformance.record("last_flow", flow)
        if shown is None:
            conformance.unknown(f"the message {mid} is not in GET messages ({body!r:.200}); its status cannot be judged")
        if shown != expected:
            conformance.fail([conformance.violation(
                "Status not the furthest reached", f"published {flow}, the endpoint shows {shown!r}, expected {expected!r}",
                {"published_order": flow, "shown": shown, "expected": expected})])
