"""FAULT: broker restarts, poison messages, a killed or stopped gateway and a stalled client lose nothing and slow nobody."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import pytest

from realtime_conformance import contract
from realtime_conformance.harness import LATE_CAP_S, FaultProxy
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
        outcome = await sc.delivery(sc.clients, [after])  # late is not lost: a barrier settles it
        delivered = [c for c in sc.clients if sc.delivered(c, after)]
        conformance.record_timeline((time.perf_counter() - t0) * 1000, f"event after recovery reached {len(delivered)} of {len(sc.clients)} clients")
        conformance.fail([conformance.violation(
            "Event after broker restart not delivered",
            f"{c.name} (connected throughout) did not receive the event published after recovery, though a later one arrived",
            {"published": after.envelope, "still_connected": c.connected}) for c in sc.clients if c.name in outcome.lost])
        if outcome.still_arriving:
            conformance.unknown(outcome.still_arriving)
        del before


@pytest.mark.requirement("FAULT-2")
async def test_malformed_messages_are_dead_lettered_and_do_not_stop_delivery(conformance):
    """Poison is settled, valid events still flow, and nothing is dropped silently: each malformed
    message is in ``<queue>.dlq``, or, for a gateway declared without one, named in its log."""
    import uuid

    bodies = malformed_bodies()
    run = uuid.uuid4().hex[:10]
    ids = {kind: f"rtc-fault2-{run}-{n}" for n, kind in enumerate(bodies)}  # each message's AMQP message_id
    with_dlq = "dead-letter-queue" not in conformance.settings.lacks
    async with conformance.target.dedicated("fault2") if conformance.settings.has("restart") else _main(conformance) as instance:
        async with instance.scenario() as sc:
            tenant = sc.tenant()
            await sc.connect(tenant)
            dlq = f"{instance.queue}.dlq"
            await sc.publisher.drain(dlq)  # start from an empty dead-letter queue
            for kind, body in bodies.items():
                await sc.publisher.publish_body(body, queue=instance.queue, message_id=ids[kind])
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
            if with_dlq:
                if len(dead) < len(bodies):
                    reasons = [m.headers.get("x-dlq-reason") for m in dead]
                    violations.append(conformance.violation(
                        "Malformed messages dropped silently",
                        f"{len(bodies)} malformed messages published, {len(dead)} found in {dlq}",
                        {"kinds": list(bodies), "reasons_seen": [str(r) for r in reasons]}))
                conformance.fail(violations)
                return
            # No dead-letter queue declared: the gateway's log must name each malformed message, by
            # its message_id or its body's SHA-256.
            if conformance.settings.target_kind == "url":
                conformance.fail(violations)
                conformance.unknown("--lacks dead-letter-queue: whether malformed messages are dropped silently is "
                                    "judged from the gateway's log, and a --gateway-url target's log cannot be read "
                                    "(use --gateway-cmd or --gateway-image)")
            silent = await _not_in_log(instance, bodies, ids)
            conformance.record("named_in_log", len(bodies) - len(silent))
            if silent:
                violations.append(conformance.violation(
                    "Malformed messages dropped silently",
                    f"{len(silent)} of {len(bodies)} malformed messages neither dead-lettered nor named in the gateway's "
                    "log by their AMQP message_id or their body's SHA-256",
                    {"silent": {kind: ids[kind] for kind in silent}, "log_tail": instance.gateway.logs()[-2000:]}))
            conformance.fail(violations)


async def _not_in_log(instance, bodies: dict[str, bytes], ids: dict[str, str], within_s: float = 5.0) -> list[str]:
    """The kinds whose message neither its message_id nor its body's SHA-256 names in the gateway's
    log, waiting up to ``within_s`` for the log to be written (bounded)."""
    import hashlib

    names = {kind: (ids[kind], hashlib.sha256(body).hexdigest()) for kind, body in bodies.items()}
    deadline, silent = time.monotonic() + within_s, list(names)
    while True:
        log = await asyncio.to_thread(instance.gateway.logs)
        silent = [kind for kind, keys in names.items() if not any(k in log for k in keys)]
        if not silent or time.monotonic() >= deadline:
            return silent
        await asyncio.sleep(0.2)


class _main:
    """The main instance as an async context manager (for targets the harness cannot start)."""

    def __init__(self, conformance) -> None:
        self.instance = conformance.main

    async def __aenter__(self):
        return self.instance

    async def __aexit__(self, *exc):
        return None


async def _restart_behind_held_deliveries(conformance, instance, sc, tabs, tenant, t0: float, *, after: str,
                                         down: range) -> None:
    """FAULT-3's and FAULT-7's way back: a few events published while the gateway is down, then a
    restart whose consumer gets no message until the tabs are back (the broker's deliveries held,
    not its connection: a gateway that cannot start before its broker is FAULT-6's business), and
    the preconditions of judging what was lost (tabs live, consuming again) as UNKNOWNs naming the
    requirement that blocked them."""
    link = instance.broker_link
    if link is not None:
        link.hold_deliveries()
    for n in down:
        await sc.publish_control(tenant, n)
    conformance.record_timeline((time.perf_counter() - t0) * 1000, f"{len(sc.publishes)} events published in all")
    await asyncio.to_thread(instance.gateway.start)
    stuck = await wait_all_live(conformance, tabs, policy_window(conformance.settings.reconnect_policy))
    if link is not None:
        link.pass_through()
    conformance.record_timeline((time.perf_counter() - t0) * 1000, "gateway back, tabs live, deliveries released")
    if stuck:
        conformance.unknown("tabs could not reconnect to the restarted gateway (see RECON-1)")
    await conformance.precondition_consuming(instance, after=f"its restart after the {after}", blocked_by="FAULT-6")
    conformance.record_timeline((time.perf_counter() - t0) * 1000, "restarted gateway consuming")


KILL_BURST, KILL_AFTER = 200, 20  # events published at once before the kill, and one by one after it


@pytest.mark.requirement("FAULT-3")
async def test_sigkill_in_flight_loses_nothing(conformance):
    conformance.require("restart")
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
        conformance.record_timeline(0, "gateway SIGKILL mid-stream")
        await stream
        await _restart_behind_held_deliveries(conformance, instance, sc, tabs, tenant, t0, after="SIGKILL",
                                              down=range(KILL_BURST, KILL_BURST + KILL_AFTER))
        # Late is not lost: the wait goes on while the backlog keeps arriving (LATE_CAP_S at most).
        link = instance.broker_link
        wanted = list(sc.publishes)
        lost, pending = await _lost_and_pending(sc, tabs, first_s=10.0 + sc.grace_s, cap_s=LATE_CAP_S)
        redelivered = sum(1 for tab in tabs for _, n, _d in tab.events) - len(sc.publishes) * len(tabs)
        conformance.record("published", len(wanted))
        conformance.record("lost", len(lost))
        conformance.record("still_arriving", len(pending))
        conformance.record("extra_deliveries", max(redelivered, 0))
        conformance.record_timeline((time.perf_counter() - t0) * 1000, f"{len(lost)} events lost, {len(pending)} still arriving")
        if not lost and not pending and not in_flight:
            conformance.unknown("every event published before the SIGKILL had already been delivered when it "
                                "landed: nothing was in flight, so the kill showed nothing")
        if lost and link is None:
            conformance.unknown(f"{len(lost)} events never arrived, but without holding the gateway's broker deliveries "
                                "(not possible for this target) they may have been emitted before the tabs were back")
        conformance.fail([conformance.violation(
            "Events lost to a SIGKILL", f"{len(lost)} of {len(wanted)} events never reached any client, though "
            "events published after them did", {"first_lost": lost[0].envelope, "lost_seqs": [p.seq for p in lost][:50]})]
            if lost else [])
        if pending:
            conformance.unknown(f"still arriving: {len(pending)} of {len(wanted)} events had reached no client when "
                                "deliveries stopped arriving, and nothing published after them had either, so late "
                                "cannot be told from lost: see DLV-2")


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


async def _lost_and_pending(sc, tabs, *, first_s: float, cap_s: float = 120.0) -> tuple[list, list]:
    """After the restart, by the rule that late is not lost: the events no tab received though a later
    one reached every tab (lost), and those no tab received with nothing later either (still arriving).
    The wait goes on while the redelivered backlog keeps arriving (``cap_s`` in all)."""
    wanted = list(sc.publishes)
    outcome = await sc.delivery(tabs, wanted, first_s=first_s, cap_s=cap_s)
    missing = _lost(sc, tabs)
    lost = [p for p in missing if all(p.seq in outcome.lost.get(tab.name, ()) for tab in tabs)]
    return lost, [p for p in missing if p not in lost and p in wanted]


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
        await _restart_behind_held_deliveries(conformance, instance, sc, tabs, tenant, t0, after="SIGTERM",
                                              down=range(STOP_BURST, STOP_BURST + STOP_AFTER))
        link = instance.broker_link

        lost, pending = await _lost_and_pending(sc, tabs, first_s=10.0 + sc.grace_s)
        conformance.record("published", len(sc.publishes))
        conformance.record("lost", len(lost))
        conformance.record("still_arriving", len(pending))
        conformance.record_timeline((time.perf_counter() - t0) * 1000, f"{len(lost)} events lost")
        if not lost and not pending and not in_flight:
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
        if pending:
            conformance.unknown(f"still arriving: {len(pending)} of {len(sc.publishes)} events had reached no client "
                                "when deliveries stopped arriving, and nothing published after them had either, so "
                                "late cannot be told from lost: see DLV-2")


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
    return result.of("late", "missing", "pending"), result


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
