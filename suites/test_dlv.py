"""DLV: every event, to every client of its tenant, once, in order, within the budget; the queue drains."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from hypothesis import given, strategies as st

from realtime_conformance.harness import strategies
from realtime_conformance.harness import latency_summary
from realtime_conformance.harness import WrongQueue
from realtime_conformance.harness.samples import conversation_update

from realtime_conformance.harness.samples import metrics, new_message, status
from ._support import planned

# Every suite test is an end-to-end check, and async whatever the project's asyncio_mode.
pytestmark = [pytest.mark.realtime, pytest.mark.asyncio]

# The conformance load profile: tenants x tabs, events per type, publish pacing.
LOAD_TENANTS, LOAD_TABS, LOAD_PER_TYPE, LOAD_PACING_S = 3, 2, 25, 0.004


@pytest.mark.requirement("DLV-1")
@given(plan=strategies.plans(max_tenants=3, max_tabs=2, max_events=16))
async def test_every_event_reaches_every_client_of_its_tenant(conformance, plan):
    async with planned(conformance, plan, all_types=True) as sc:
        conformance.judge(sc)


PAYLOADS = {
    "new_message": lambda n: new_message(f"conv_{n}", f"wamid.load{n}", f"load message {n}"),
    "conversation_update": lambda n: conversation_update(f"conv_{n}"),
    "status_update": lambda n: status(f"conv_{n}", f"wamid.load{n}", "delivered"),
    "metrics_update": lambda n: metrics(n),
}


@contextlib.asynccontextmanager
async def load_profile(conformance):
    """The conformance load profile, delivered; yields the settled scenario."""
    async with conformance.scenario() as sc:
        tenants = [sc.tenant("load") for _ in range(LOAD_TENANTS)]
        for tenant in tenants:
            await sc.connect(tenant, tabs=LOAD_TABS)
        types = {t: make for t, make in PAYLOADS.items() if t in sc.control_types}  # timed only if recognisable
        if not types:
            # Nothing reached a fresh client recognisably in the preflight: send every type anyway, so
            # a gateway that delivers nothing shows as pending (DLV-2) and a reshaping one as UNKNOWN.
            types = dict(PAYLOADS)
            conformance.record("load_types_note", "no type is delivered recognisably (see DLV-6, DLV-1): all sent")
        conformance.record("load_types", sorted(types))
        for n in range(LOAD_PER_TYPE):
            for event_type, make in types.items():
                await sc.publish(tenants[n % LOAD_TENANTS], event_type, make(n))
                await asyncio.sleep(LOAD_PACING_S)  # pacing is the load profile itself, not a synchronisation
        await sc.settle()
        yield sc


@pytest.mark.requirement("DLV-2")
async def test_latency_within_budget(conformance):
    async with load_profile(conformance) as sc:
        result = conformance.judge(sc)
        conformance.record("deliveries_timed", sum(len(v) for v in result.latencies_ms.values()))


DLV3_P99_MS, DLV3_ATTEMPTS = 100, 2


@pytest.mark.requirement("DLV-3")
async def test_p99_latency_under_load(conformance):
    """The profile runs up to twice and the better p99 counts: a harness starved of CPU by its
    neighbours for a moment is noise, a gateway over 100 ms is over it every time."""
    attempts = []
    for _ in range(DLV3_ATTEMPTS):
        async with load_profile(conformance) as sc:
            result = sc.check()
        everything = [v for values in result.latencies_ms.values() for v in values]
        if not everything:
            conformance.unknown("no delivery was timed under load")
        summary = latency_summary(everything, DLV3_P99_MS)
        attempts.append(summary)
        if summary["p99_ms"] <= DLV3_P99_MS:
            conformance.record_latencies(result)
            break
    best = min(attempts, key=lambda s: s["p99_ms"])
    conformance.record("p99_ms", round(best["p99_ms"], 2))
    conformance.record("p99_ms_per_attempt", [round(s["p99_ms"], 2) for s in attempts])
    conformance.record("deliveries_timed", best["count"])
    if best["p99_ms"] > DLV3_P99_MS:
        conformance.record_latencies(result)
        conformance.fail([conformance.violation(
            "p99 over 100 ms under load", f"p99 {best['p99_ms']:.0f} ms over {best['count']} deliveries, "
            f"in each of {len(attempts)} runs of the profile",
            {"p50_ms": best["p50_ms"], "p99_ms": best["p99_ms"], "max_ms": best["max_ms"]}, severity="medium")])


@pytest.mark.requirement("DLV-4")
@given(plan=strategies.plans(max_tenants=2, max_tabs=2, max_events=12))
async def test_no_event_is_received_twice(conformance, plan):
    async with planned(conformance, plan) as sc:
        conformance.judge(sc)


@pytest.mark.requirement("DLV-5")
async def test_events_of_a_tenant_arrive_in_publish_order(conformance):
    async with conformance.scenario() as sc:
        tenants = [sc.tenant(), sc.tenant()]
        for tenant in tenants:
            await sc.connect(tenant, tabs=2)
        for n in range(60):  # a burst: no pacing, the broker and gateway queue them up
            await sc.publish_control(tenants[n % 2], n)
        await sc.settle()
        conformance.judge(sc)


@pytest.mark.requirement("DLV-6")
@given(batch=st.tuples(*(strategies.event_data(t) for t in strategies.EVENT_TYPES)))
async def test_all_four_event_types_are_delivered(conformance, batch):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        (client,) = await sc.connect(tenant)
        for event_type, data in zip(strategies.EVENT_TYPES, batch):
            await sc.publish(tenant, event_type, data)
        await sc.settle()  # the barrier settles each type: arrived, or overtaken by something later
        # Judged by event name: a type counts as delivered when an event of that name arrived,
        # whatever its payload looks like (that is DLV-1's business). Late is not lost: a type
        # that did not arrive is lost only once an event published after it reached the client.
        received = {r.event for r in client.received}
        absent = [p for p in sc.publishes if not p.barrier and p.type not in received]
        conformance.record("types_received", sorted(received))
        later = max((s for r in client.received if (s := sc.seq_of(r, r.data)) is not None), default=0)
        lost = [p for p in absent if p.seq < later]
        conformance.fail([conformance.violation(
            "Event type never delivered", f"{p.type} was published but no {p.type} event reached the tenant's "
            "client, though an event published after it did", {"published": p.envelope}) for p in lost])
        if absent:
            conformance.unknown(f"still arriving: no {absent[0].type} event had reached the tenant's client when "
                                "deliveries stopped arriving, and nothing published after it had either, so late "
                                "cannot be told from lost: see DLV-2")


@pytest.mark.requirement("DLV-7")
async def test_queue_drains(conformance):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        await sc.connect(tenant)
        for n in range(30):
            await sc.publish_control(tenant, n)
        await sc.settle()
        conformance.controls(sc)
        counts = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # acks trail emits by a little: poll the broker, bounded
            counts = await conformance.main.queue_counts(sc.publisher)
            if counts["ready"] == 0 and counts.get("unacked") in (0, None):
                break
            await asyncio.sleep(0.2)
        conformance.record("queue_counts", counts)
        if counts is None:
            conformance.unknown("the queue's depth could not be read")
        if counts["ready"] != 0 or (counts.get("unacked") or 0) != 0:
            conformance.fail([conformance.violation(
                "Queue did not drain", f"after every event was delivered the queue held {counts}",
                {"queue": conformance.main.queue, "counts": counts})])
        if counts.get("unacked") is None:
            conformance.unknown("ready is 0, but this broker does not let the harness read unacknowledged counts")


@pytest.mark.requirement("DLV-8")
async def test_consumes_a_durable_queue_with_a_configurable_name(conformance):
    main = conformance.main
    async with conformance.scenario() as sc:
        info = await main.queue_info()  # read, never re-declared: the gateway's arguments are its own
        state = await sc.publisher.queue_state()
        durable = info.get("durable") if info else await sc.publisher.queue_is_durable()
        conformance.record("queue", main.queue)
        conformance.record("queue_as_the_broker_describes_it", info)
        conformance.record("consumers", state[1] if state else None)
        violations = []
        if durable is False:
            violations.append(conformance.violation("Queue not durable", f"{main.queue} is not durable",
                                                    {"queue": main.queue, "broker_says": info}))
        if not state or state[1] < 1:
            violations.append(conformance.violation("No consumer on the queue", f"{main.queue} has no consumer"))
        conformance.fail(violations)
        if durable is None:
            conformance.unknown("this broker does not let the harness read the queue's durability "
                                "(external broker without its management API)")
    if not conformance.settings.has("restart"):
        return  # the configured name is the one in use; another name needs a harness-started gateway
    custom = f"{conformance.settings.queue}.custom"
    try:
        async with conformance.target.dedicated("custom-queue", queue=custom) as instance:
            conformance.record("custom_queue", instance.queue)
            async with instance.scenario() as sc:
                tenant = sc.tenant()
                await sc.connect(tenant)
                await sc.publish_control(tenant, 8)
                await sc.settle()
                conformance.judge(sc, "missing")
    except WrongQueue as exc:
        conformance.record("consumed_instead", exc.consumed)
        conformance.fail([conformance.violation(
            "Configured queue name ignored", str(exc), {"configured": custom, "consumed": exc.consumed})])
