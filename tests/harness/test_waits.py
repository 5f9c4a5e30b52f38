"""The wait for deliveries: it goes on while things arrive, and no longer than its bounds."""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime_conformance.harness.wire.waits import wait_while_arriving

pytestmark = pytest.mark.asyncio


async def _arrive(changed: asyncio.Event, box: list[int], every_s: float, times: int) -> None:
    for _ in range(times):
        await asyncio.sleep(every_s)
        box[0] += 1
        changed.set()


async def test_it_outlasts_its_idle_bound_while_deliveries_keep_arriving() -> None:
    changed, box = asyncio.Event(), [0]
    feeder = asyncio.create_task(_arrive(changed, box, 0.1, 8))  # 0.8 s of arrivals, idle bound 0.3 s
    started = time.monotonic()
    assert await wait_while_arriving(changed, lambda: box[0] >= 8, lambda: box[0], idle_s=0.3, cap_s=5)
    assert time.monotonic() - started >= 0.7
    await feeder


async def test_it_gives_up_once_nothing_new_arrives_for_the_idle_bound() -> None:
    changed, box = asyncio.Event(), [0]
    started = time.monotonic()
    assert not await wait_while_arriving(changed, lambda: False, lambda: box[0], idle_s=0.3, cap_s=5)
    assert 0.25 <= time.monotonic() - started < 1.0


async def test_a_gateway_still_coming_back_gets_first_s_before_its_first_delivery() -> None:
    changed, box = asyncio.Event(), [0]
    feeder = asyncio.create_task(_arrive(changed, box, 0.6, 1))  # the first arrival after 0.6 s
    assert await wait_while_arriving(changed, lambda: box[0] >= 1, lambda: box[0], idle_s=0.3, first_s=1.5, cap_s=5)
    await feeder


async def test_the_cap_ends_it_however_busy_the_arrivals() -> None:
    changed, box = asyncio.Event(), [0]
    feeder = asyncio.create_task(_arrive(changed, box, 0.05, 100))
    started = time.monotonic()
    assert not await wait_while_arriving(changed, lambda: False, lambda: box[0], idle_s=0.3, cap_s=0.5)
    assert time.monotonic() - started < 1.0
    feeder.cancel()
