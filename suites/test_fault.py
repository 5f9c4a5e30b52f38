"""FAULT: broker restarts, poison messages, a killed or stopped gateway and a stalled client lose nothing and slow nobody."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import pytest

from realtime_conformance import contract
from realtime_conformance.harness import FaultProxy
from realtime_conformance.harness.samples import metrics, new_message
from ._support import policy_window
from .test_recon import wait_all_live

# Every suite test is an end-to-end check, and async whatever the project's asyncio_mode.
pytestmark = [pytest.mark.realtime, pytest.mark.asyncio]

FAULT1_LIMIT_S = 30.0


def malformed_bodies() -> dict[str, bytes]:
    """One body per kind of malformed message FAULT-2 names."""
    good = {"type": "metrics_update", "tenantId": "t-poison", "data": metrics(1) | {"timestamp": "x"}, "timestamp": "x"}
    enc = lambda v: json.dumps(v).encode()  # noqa: E731
    oversize = new_message("conv_big", "wamid.big", "x") | {"padding": "y" * (contract.limits().max_envelope_bytes + 1)}
    return {
        "not JSON": b"{not json",
        "not UTF-8": b"\xff\xfe\x00garbage",
        "JSON array": b"[1, 2, 3]",
        "JSON string": b'"new_message"',
        "missing tenantId": enc({k: v for k, v in good.items() if k != "tenantId"}),
        "missing type": enc({k: v for k, v in good.items() if k != "type"}),
        "missing data": enc({k: v for k, v in good.items() if k != "data"}),
        "unknown type": enc(good | {"type": "delete_everything"}),
        "tenantId not a string": enc(good | {"tenantId": 42}),
        "data not an object": enc(good | {"data": "surprise"}),
        "oversize": enc({**good, "type": "new_message", "data": oversize}),
    }


@pytest.mark.requirement("FAULT-1")
async def test_consumption_resumes_after_a_broker_restart(conformance):
    conformance.require("restart", "the gateway must be pointed at a broker the harness can restart")
    conformance.require_restartable_broker()
    async with conformance.target.dedicated("fault1", own_broker=True) as instance, instance.scenario() as sc:
        tenant = sc.tenant()
        await sc.connect(tenant, tabs=2)
        before = await sc.publish_control(tenant, 1)
        await sc.settle(barrier=False)
        await sc.publisher.close()
        t0 = time.perf_counter()
        await asyncio.to_thread(instance.broker.kill)
        conformance.record_timeline(0, "broker SIGKILL")
        await asyncio.to_thread(instance.broker.start)
        back = time.perf_counter() - t0
        conformance.record_timeline(back * 1000, "broker accepting AMQP again")
        try:
            await instance.wait_ready(FAULT1_LIMIT_S)
        except TimeoutError:
            conformance.fail([conformance.violation(
                "Consumer not back", f"no consumer on {instance.queue} within {FAULT1_LIMIT_S:.0f} s of the broker's return",
                {"log_tail": instance.gateway.logs()[-2000:]})])
        resumed = time.perf_counter() - t0
        conformance.record_timeline(resumed * 1000, "gateway consuming again")
        conformance.record("consumer_back_after_broker_s", round(resumed - back, 2))
        await sc.publisher.connect()
        after = await sc.publish_control(tenant, 2)
        await sc.settle(barrier=False)
        delivered = [c for c in sc.clients if sc.delivered(c, after)]
        conformance.record_timeline((time.perf_counter() - t0) * 1000, f"event after recovery reached {len(delivered)} of {len(sc.clients)} clients")
        conformance.fail([conformance.violation(
            "Event after broker restart not delivered",
            f"{c.name} (connected throughout) did not receive the event published after recovery",
            {"published": after.envelope, "still_connected": c.connected}) for c in sc.clients if c not in delivered])
        del before


@pytest.mark.requirement("FAULT-2")
async def test_malformed_messages_are_dead_lettered_and_do_not_stop_delivery(conformance):
    bodies = malformed_bodies()
    dlq = None
    async with conformance.target.dedicated("fault2") if conformance.settings.has("restart") else _main(conformance) as instance:
        async with instance.scenario() as sc:
            tenant = sc.tenant()
            await sc.connect(tenant)
            dlq = f"{instance.queue}.dlq"
            await sc.publisher.drain(dlq)  # start from an empty dead-letter queue
            for body in bodies.values():
                await sc.publisher.publish_body(body, queue=instance.queue)
            valid = await sc.publish_control(tenant, 4)
            await sc.settle()
            violations = []
            if not any(sc.delivered(c, valid) for c in sc.clients):
                violations.append(conformance.violation(
                    "Valid event after poison not delivered", "the gateway stopped delivering after malformed messages",
                    {"published": valid.envelope, "log_tail": instance.gateway.logs()[-2000:]}))
            counts, deadline = None, time.monotonic() + 5
            while time.monotonic() < deadline:  # bounded poll of the broker's counters
                counts = await instance.queue_counts(sc.publisher)
                if counts and counts["ready"] == 0 and not counts.get("unacked"):
                    break
                await asyncio.sleep(0.2)
            conformance.record("queue_after", counts)
            if counts is None or counts["ready"] or counts.get("unacked"):
                violations.append(conformance.violation(
                    "Poison messages not settled", f"{instance.queue} still holds {counts} (redelivered in a loop?)",
                    {"counts": counts}))
            dead = await sc.publisher.drain(dlq)
            conformance.record("dead_lettered", len(dead))
            conformance.record("malformed_published", len(bodies))
            if "dead-letter-queue" not in conformance.settings.lacks and len(dead) < len(bodies):
                reasons = [m.headers.get("x-dlq-reason") for m in dead]
                violations.append(conformance.violation(
                    "Malformed messages dropped silently",
                    f"{len(bodies)} malformed messages published, {len(dead)} found in {dlq}",
                    {"kinds": list(bodies), "reasons_seen": [str(r) for r in reasons]}))
            conformance.fail(violations)


class _main:
    """The main instance as an async context manager (for targets the harness cannot start)."""

    def __init__(self, conformance) -> None:
        self.instance = conformance.main

    async def __aenter__(self):
        return self.instance

    async def __aexit__(self, *exc):
        return None


KILL_BURST, KILL_AFTER = 200, 20  # events published at once before the kill, and one by one after it


@pytest.mark.requirement("FAULT-3")
async def test_sigkill_in_flight_loses_nothing(conformance):
    conformance.require("restart")
    policy = conformance.settings.reconnect_policy
    async with conformance.target.dedicated("fault3", broker_link=True) as instance, instance.scenario() as sc:
        tenant = sc.tenant()
        tabs = [sc.tab(tenant, seed=n) for n in range(2)]
        for tab in tabs:
            await tab.connect()

        async def burst():
            # All at once, not one confirm at a time: the broker hands the gateway a backlog faster
            # than any gateway works through it, so the SIGKILL lands with events in its hands
            # however fast or loaded the machine is.
            await asyncio.gather(*(sc.publish_control(tenant, n) for n in range(KILL_BURST)))

        stream = asyncio.create_task(burst())
        await tabs[0].wait_for_event(sc.control_type, timeout=5, since=0)
        t0 = time.perf_counter()
        before_kill = list(sc.publishes)
        await asyncio.to_thread(instance.gateway.kill)
        in_flight = sum(1 for p in before_kill if not any(sc.delivered(tab, p) for tab in tabs))
        conformance.record("in_flight_at_kill", in_flight)
        link = instance.broker_link
        if link is not None:
            link.cut()  # the restarted gateway consumes only once the tabs are back
        conformance.record_timeline(0, "gateway SIGKILL mid-stream")
        await stream
        for n in range(KILL_BURST, KILL_BURST + KILL_AFTER):  # and a few while it is down
            await sc.publish_control(tenant, n)
        conformance.record_timeline((time.perf_counter() - t0) * 1000, f"{len(sc.publishes)} events published in all")
        await asyncio.to_thread(instance.gateway.start)
        stuck = await wait_all_live(conformance, tabs, policy_window(policy))
        if link is not None:
            link.pass_through()
        conformance.record_timeline((time.perf_counter() - t0) * 1000, "gateway back, tabs live, broker link restored")
        if stuck:
            conformance.unknown("tabs could not reconnect to the restarted gateway (see RECON-1)")
        def lost_fn():
            return [p for p in sc.publishes if not any(sc.delivered(tab, p) for tab in tabs)]

        await sc.wait_until(lambda: not lost_fn(), timeout=10.0 + sc.grace_s)
        lost = lost_fn()
        redelivered = sum(1 for tab in tabs for _, n, _d in tab.events) - len(sc.publishes) * len(tabs)
        conformance.record("published", len(sc.publishes))
        conformance.record("lost", len(lost))
        conformance.record("extra_deliveries", max(redelivered, 0))
        conformance.record_timeline((time.perf_counter() - t0) * 1000, f"{len(lost)} events lost")
        if not lost and not in_flight:
            conformance.unknown("every event published before the SIGKILL had already been delivered when it "
                                "landed: nothing was in flight, so the kill showed nothing")
        if lost and link is None:
            conformance.unknown(f"{len(lost)} events never arrived, but without holding the gateway's broker link "
                                "(not possible for this target) they may have been emitted before the tabs were back")
        conformance.fail([conformance.violation(
            "Events lost to a SIGKILL", f"{len(lost)} of {len(sc.publishes)} events never reached any client",
            {"first_lost": lost[0].envelope, "lost_seqs": [p.seq for p in lost][:50]})] if lost else [])


# Events published at once around the SIGTERM (more than FAULT-3's burst: a graceful gateway keeps
# working through its backlog until it acts on the signal, and must still hold one then), and one by
# one once it is down.
STOP_BURST, STOP_AFTER = 1000, 20


async def _all_at_once(sc, tenant, seqs) -> None:
    """Control events published together, not one confirm at a time, so the broker hands the gateway
    a backlog faster than it works through it (FAULT-3's burst; a shared helper later)."""
    await asyncio.gather(*(sc.publish_control(tenant, n) for n in seqs))


def _lost(sc, tabs) -> list:
    """The events no tab has received (each tab's events read once: a thousand events are cheap)."""
    got = {seq for tab in tabs for e in tab.events if (seq := sc.seq_of(e, e[2])) is not None}
    return [p for p in sc.publishes if p.seq not in got]


async def _until_delivered(sc, tabs, quiet_s: float, cap_s: float = 120.0) -> list:
    """The events still lost once every one has arrived, or nothing more arrived for ``quiet_s``
    (``cap_s`` in all): a gateway working through a redelivered backlog gets the time it keeps using."""
    deadline = time.monotonic() + cap_s
    while True:
        lost = _lost(sc, tabs)
        left = deadline - time.monotonic()
        if not lost or left <= 0:
            return lost
        before = len(lost)
        if not await sc.wait_until(lambda: len(_lost(sc, tabs)) < before, timeout=min(quiet_s, left)):
            return _lost(sc, tabs)


@pytest.mark.requirement("FAULT-7")
async def test_sigterm_stops_within_the_bound_and_loses_nothing(conformance):
    """A deploy's SIGTERM: the gateway exits within the stop bound, and every event it had in hand
    reaches the tabs, before the exit or after the restart (judged as FAULT-3, SIGTERM for SIGKILL)."""
    conformance.require("restart")
    bound = conformance.settings.stop_grace_s
    conformance.record("stop_bound_s", bound)
    async with conformance.target.dedicated("fault7", broker_link=True) as instance, instance.scenario() as sc:
        tenant = sc.tenant()
        tabs = [sc.tab(tenant, seed=n) for n in range(2)]
        for tab in tabs:
            await tab.connect()
        stream = asyncio.create_task(_all_at_once(sc, tenant, range(STOP_BURST)))
        await tabs[0].wait_for_event(sc.control_type, timeout=5, since=0)
        in_flight = len(_lost(sc, tabs))  # published, and not yet received by any tab
        conformance.record("in_flight_at_sigterm", in_flight)
        t0 = time.perf_counter()
        conformance.record_timeline(0, "gateway SIGTERM mid-stream")
        stopped = await asyncio.to_thread(instance.gateway.stop)  # the bound, plus the harness's margin
        await stream
        if stopped is None:
            conformance.unknown("the harness could not stop this gateway, so its SIGTERM handling was not seen")
        conformance.record("stop", stopped.as_dict())
        conformance.record_timeline(stopped.elapsed_s * 1000, "gateway killed (SIGKILL) after the margin"
                                    if stopped.escalated else f"gateway exited (code {stopped.returncode})")
        if stopped.escalated or stopped.elapsed_s > bound:
            conformance.fail([conformance.violation(
                "Gateway did not stop within the bound",
                (f"still running {stopped.waited_s:g} s after SIGTERM (the bound is {bound:g} s): the harness had "
                 "to SIGKILL it, as a deployment would" if stopped.escalated else
                 f"it took {stopped.elapsed_s:.1f} s to exit after SIGTERM, over the bound of {bound:g} s"),
                {"stop": stopped.as_dict(), "stop_bound_s": bound, "clients_connected": len(tabs),
                 "log_tail": instance.gateway.logs()[-2000:]})])
        link = instance.broker_link
        if link is not None:
            link.cut()  # the restarted gateway consumes only once the tabs are back
        for n in range(STOP_BURST, STOP_BURST + STOP_AFTER):  # and a few while it is down
            await sc.publish_control(tenant, n)
        conformance.record_timeline((time.perf_counter() - t0) * 1000, f"{len(sc.publishes)} events published in all")
        await asyncio.to_thread(instance.gateway.start)
        stuck = await wait_all_live(conformance, tabs, policy_window(conformance.settings.reconnect_policy))
        if link is not None:
            link.pass_through()
        conformance.record_timeline((time.perf_counter() - t0) * 1000, "gateway back, tabs live, broker link restored")
        if stuck:
            conformance.unknown("tabs could not reconnect to the restarted gateway (see RECON-1)")
        try:  # its reconnect backoff after the held link is not this check's business: wait it out
            await instance.wait_ready()
        except TimeoutError as exc:
            conformance.unknown(f"the restarted gateway did not consume again once its broker link was back "
                                f"(FAULT-1's business), so what it kept could not be seen: {exc}")
        conformance.record_timeline((time.perf_counter() - t0) * 1000, "restarted gateway consuming")

        lost = await _until_delivered(sc, tabs, quiet_s=10.0 + sc.grace_s)
        conformance.record("published", len(sc.publishes))
        conformance.record("lost", len(lost))
        conformance.record_timeline((time.perf_counter() - t0) * 1000, f"{len(lost)} events lost")
        if not lost and not in_flight:
            conformance.unknown("every event published before the SIGTERM had already been delivered when it "
                                "landed: nothing was in flight, so the stop showed nothing")
        if lost and link is None:
            conformance.unknown(f"{len(lost)} events never arrived, but without holding the gateway's broker link "
                                "(not possible for this target) they may have been emitted before the tabs were back")
        conformance.fail([conformance.violation(
            "Events lost to a graceful stop",
            f"{len(lost)} of {len(sc.publishes)} events never reached any client: acknowledged on the way out "
            "without being emitted, or emitted after the sockets were closed",
            {"first_lost": lost[0].envelope, "lost_seqs": [p.seq for p in lost][:50],
             "stop": stopped.as_dict()})] if lost else [])


STALL_EVENTS, STALL_BODY_CHARS, STALL_PACING_S = 120, 4096, 0.003


async def _burst(sc, tenant, label: str) -> None:
    """Large new_message bodies fill a stalled peer's buffers; another type if this target's
    new_message is not recognisable (small payloads then: a weaker, still valid, check)."""
    body = "x" * STALL_BODY_CHARS
    big = "new_message" in sc.control_types
    for n in range(STALL_EVENTS):
        if big:
            await sc.publish(tenant, "new_message", new_message(f"conv_{label}_{n % 5}", f"wamid.{label}.{n}", body))
        else:
            await sc.publish_control(tenant, n)
        await asyncio.sleep(STALL_PACING_S)  # the load profile's pacing, not a synchronisation
    await sc.settle(barrier=False)


def _over_budget(sc, clients) -> list:
    """The readers' late or missing deliveries (what a stalled peer could cause)."""
    result = sc.check(clients)
    return result.of("late", "missing"), result


async def _peer_and_readers(conformance, sc, proxy, label: str):
    """One client through the proxy (the one that may stall) and three readers of the same tenant."""
    tenant = sc.tenant()
    peer = sc.client(tenant, name=f"{tenant}/{label}", expects_events=False, url=proxy.url_for("http"))
    if not await peer.connect():
        conformance.unknown("the client meant to stall could not connect through the proxy")
    return tenant, await sc.connect(tenant, tabs=3)


@pytest.mark.requirement("FAULT-4")
async def test_a_stalled_client_slows_nobody(conformance):
    gateway = urlsplit(conformance.main.url)
    async with FaultProxy(gateway.hostname, gateway.port) as proxy:
        # Baseline: the same load with the would-be staller reading normally.
        async with conformance.scenario() as base:
            tenant, readers = await _peer_and_readers(conformance, base, proxy, "peer")
            await _burst(base, tenant, "base")
            baseline_late, baseline = _over_budget(base, readers)
        conformance.record("baseline_p99_ms", _p99(baseline))
        if baseline_late:
            conformance.unknown(f"the load alone breaks the budget on this machine ({baseline_late[0].message}); "
                                "a stalled client's effect cannot be told apart")
        async with conformance.scenario() as sc:
            tenant, readers = await _peer_and_readers(conformance, sc, proxy, "stalled")
            proxy.stall()  # connected, not reading: what it is sent piles up
            await _burst(sc, tenant, "stall")
            late, result = _over_budget(sc, readers)
            conformance.record_latencies(result)
            conformance.record("stalled_p99_ms", _p99(result))
            conformance.record("bytes_held_or_sent_to_stalled", proxy.bytes_to_client)
            proxy.pass_through()
            conformance.record("burst_type", "new_message" if "new_message" in sc.control_types else sc.control_type)
            conformance.fail(f.as_violation("FAULT-4") for f in late[:5])
            if not result.own_deliveries:
                conformance.unknown("positive control: the reading clients received nothing")


def _p99(result) -> float | None:
    values = sorted(v for vs in result.latencies_ms.values() for v in vs)
    return round(values[min(len(values) - 1, int(0.99 * len(values)))], 1) if values else None
