"""STAT: message status updates reach the tenant in order, naming their conversation."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from harness import strategies
from _support import status

FIELDS = ("messageId", "conversationId", "status", "timestamp")


@pytest.mark.requirement("STAT-1")
@given(flow=st.lists(st.sampled_from(strategies.STATUSES), min_size=1, max_size=6))
async def test_status_updates_arrive_in_order_with_their_fields(conformance, flow):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        (client,) = await sc.connect(tenant)
        for value in flow:
            await sc.publish(tenant, "status_update", status("conv_stat", f"wamid.stat.{tenant}", value))
        await sc.settle()
        missing = [r.data for r in client.events_named("status_update")
                   if not isinstance(r.data, dict) or any(not r.data.get(f) for f in FIELDS)]
        conformance.fail([conformance.violation("status_update lacks a field", f"received {m!r}; needs {FIELDS}",
                                                {"received": m}) for m in missing[:3]])
        conformance.judge(sc, "STAT-1", as_=("DLV-1", "DLV-5"))


@pytest.mark.requirement("STAT-3")
@given(batch=st.lists(strategies.status_update(), min_size=1, max_size=6))
async def test_every_status_update_names_its_conversation(conformance, batch):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        (client,) = await sc.connect(tenant)
        for data in batch:
            await sc.publish(tenant, "status_update", data)
        await sc.settle()
        published = {p.data["messageId"]: p.data["conversationId"] for p in sc.publishes if p.type == "status_update"}
        violations = []
        for r in client.events_named("status_update"):
            got = r.data.get("conversationId") if isinstance(r.data, dict) else None
            want = published.get(r.data.get("messageId")) if isinstance(r.data, dict) else None
            if not got or (want and got != want):
                violations.append(conformance.violation(
                    "status_update without its conversationId",
                    f"message {r.data.get('messageId') if isinstance(r.data, dict) else r.data!r}: conversationId {got!r}, published {want!r}",
                    {"received": r.data}))
        conformance.fail(violations[:5])
        conformance.judge(sc, "STAT-3")
