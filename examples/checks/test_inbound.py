"""A check of your own, written against the public API only (docs/writing-checks.md shows it)."""

import pytest

from realtime_conformance.harness import samples

pytestmark = [pytest.mark.realtime, pytest.mark.asyncio]


@pytest.mark.requirement("DLV-1")  # it adds evidence to the catalogue requirement it checks
async def test_inbound_update_reaches_every_tab(conformance):
    async with conformance.scenario() as sc:
        agent, bystander = sc.tenant("agent"), sc.tenant("bystander")
        tabs = await sc.connect(agent, tabs=3)          # one token, three tabs
        await sc.connect(bystander)
        update = {**samples.conversation_update("conv_42", "Can you help?"), "direction": "inbound"}
        published = await sc.publish(agent, "conversation_update", update)
        await sc.publish_control(bystander)              # the bystander's positive control
        await sc.settle()                                # bounded by the latency budget: no sleeps

        result = conformance.judge(sc, "missing", "altered")   # FAIL with the first finding, if any
        assert all(sc.delivered(tab, published) for tab in tabs)
        slow = [ms for ms in result.latencies_ms["conversation_update"] if ms > 300]
        conformance.record("over_300_ms", len(slow))
        if slow:
            conformance.fail([conformance.violation("Inbound update slower than 300 ms",
                                                    f"{len(slow)} of {len(tabs)} tabs waited over 300 ms")])
