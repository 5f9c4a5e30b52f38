"""TAB: several tabs of one user, one token: each gets every event once, and closing one hurts no other."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from realtime_conformance.harness import strategies
from ._support import metrics

# Every suite test is an end-to-end check, and async whatever the project's asyncio_mode.
pytestmark = [pytest.mark.realtime, pytest.mark.asyncio]


@pytest.mark.requirement("TAB-1")
@given(tabs=st.integers(2, 4), batch=st.lists(strategies.events(), min_size=1, max_size=10))
async def test_every_tab_gets_every_event_once(conformance, tabs, batch):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        await sc.connect(tenant, tabs=tabs)  # one token shared by all tabs, as in one browser
        for event_type, data in batch:
            await sc.publish(tenant, event_type, data)
        await sc.settle()
        conformance.judge(sc, "TAB-1")


@pytest.mark.requirement("TAB-2")
async def test_closing_one_tab_keeps_the_others_live(conformance):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        first, second, third = await sc.connect(tenant, tabs=3)
        for n in range(5):
            await sc.publish(tenant, "metrics_update", metrics(n))
        await sc.settle()
        await second.close()
        for n in range(5, 10):
            await sc.publish(tenant, "metrics_update", metrics(n))
        await sc.settle()
        # The gateway handles the close asynchronously; after a settle's round trips it surely
        # has, so these events show what closing a tab did to the others.
        for n in range(10, 15):
            await sc.publish(tenant, "metrics_update", metrics(n))
        await sc.settle()
        conformance.record("closed_tab", second.name)
        conformance.judge(sc, "TAB-2", as_=("DLV-1", "TAB-1"))
