"""CLU: a gateway running as several instances behaves as one.

Run with ``--gateway-replicas 2`` (or more) and ``-m cluster``; with one instance every check
here is SKIPPED. Clients are spread over the instances by connecting to each directly, the way
a load balancer with sticky sessions keeps each client on one instance; the kill check puts a
failover balancer in front of each tab, so a tab whose instance dies comes back on another.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, strategies as st

from realtime_conformance.harness import RestClient, strategies
from realtime_conformance.harness.samples import new_message, status
from ._support import planned, policy_window, schedule_evidence

# End-to-end checks that need two or more instances (SKIPPED with one).
pytestmark = [pytest.mark.realtime, pytest.mark.cluster, pytest.mark.asyncio]


def copies(sc, receiver, publish) -> int:
    """How many times ``receiver`` got ``publish`` (recognised by its marker)."""
    if hasattr(receiver, "received"):
        items = [(r, r.data) for r in receiver.received]
    else:
        items = [(e, e[2]) for e in receiver.events]
    return sum(1 for item, data in items if sc.seq_of(item, data) == publish.seq)


def misses(sc) -> dict[str, list[int]]:
    """Each client's events of its own tenant it never received (none published before it connected).

    Counted directly, not from the checker's findings: two tabs that share a token turn one
    tab's miss into a difference between siblings, and a duplicate into one too (CLU-2's)."""
    return {c.name: [p.seq for p in sc.publishes if p.tenant == c.tenant and not sc.delivered(c, p)]
            for c in sc.clients}


def judge_misses(conformance, sc, clients) -> None:
    """FAIL for each of ``clients`` that missed some of its tenant's events (UNKNOWN past unrecognisable ones)."""
    result = conformance.controls(sc)
    missed = misses(sc)
    lacking = [c for c in clients if missed[c.name]]
    if any(result.unrecognised.get(c.name) for c in lacking):
        conformance.unknown("events arrived in a form that matches nothing published, so which were missed "
                            "cannot be told (see DLV-1)")
    conformance.fail(conformance.violation(
        "Event not delivered on an instance", f"{c.name} on instance {sc.instance_of.get(c.name, 0) + 1} never "
        f"received events {missed[c.name]} of its tenant", {"client": c.name, "missing_seqs": missed[c.name]})
        for c in lacking)


@pytest.mark.requirement("CLU-1")
@given(plan=strategies.plans(max_tenants=3, max_tabs=3, max_events=12))
async def test_every_client_on_every_instance_receives(conformance, plan):
    async with planned(conformance, plan, across_instances=True) as sc:
        conformance.record("clients_per_instance", {n: len(sc.on_instance(n)) for n in range(len(sc.urls))})
        judge_misses(conformance, sc, sc.clients)


@pytest.mark.requirement("CLU-2")
@given(plan=strategies.plans(max_tenants=2, max_tabs=3, max_events=12))
async def test_no_client_receives_an_event_twice_across_instances(conformance, plan):
    async with planned(conformance, plan, across_instances=True) as sc:
        conformance.judge(sc, "duplicate")


ROOM_LIKE = ("a:b", "tenant:x", "*", "#", "租户", "ⓣⓔⓝⓐⓝⓣ", "a/b", "x y", "Ab%41")


@pytest.mark.requirement("CLU-3")
@given(generated=st.lists(strategies.tenant_ids(), min_size=1, max_size=3, unique=True))
async def test_room_like_tenant_ids_reach_every_instance(conformance, generated):
    async with conformance.cluster_scenario() as sc:
        replicas = len(sc.urls)
        plain = [sc.tenant("plain"), sc.tenant("plain")]  # ordinary ids: what any tenant gets anyway
        shaped = list(dict.fromkeys(sc.tenant(t[:200]) for t in (*ROOM_LIKE, *generated)))  # unique, within limits
        for tenant in (*shaped, *plain):
            for n in range(replicas):
                await sc.connect(tenant, instance=n)
        for n, tenant in enumerate((*shaped, *plain)):
            await sc.publish_control(tenant, n)
        await sc.settle()
        missed = misses(sc)
        # An instance where ordinary tenants miss events is not a room-naming defect (CLU-1's).
        plain_ok = {n for n in range(replicas)
                    if not any(missed[c.name] for c in sc.on_instance(n) if c.tenant in plain)}
        conformance.record("instances_where_ordinary_ids_got_everything", sorted(plain_ok))
        conformance.record("tenant_ids", shaped)
        judge_misses(conformance, sc, [c for c in sc.clients if c.tenant in shaped
                                       and sc.instance_of.get(c.name) in plain_ok])


@pytest.mark.requirement("CLU-4")
@given(plan=strategies.plans(max_tenants=4, max_tabs=2, max_events=20))
async def test_no_event_reaches_another_tenant_across_instances(conformance, plan):
    async with planned(conformance, plan, across_instances=True) as sc:
        conformance.judge(sc, "foreign")


@pytest.mark.requirement("CLU-4")
async def test_no_leak_across_instances_over_many_events(conformance):
    async with conformance.cluster_scenario() as sc:
        tenants = [sc.tenant("iso") for _ in range(4)]
        for tenant in tenants:
            await sc.connect(tenant, tabs=len(sc.urls))
        for n in range(120):
            await sc.publish_control(tenants[n % len(tenants)], n)
        await sc.settle()
        conformance.record("events_checked", len(sc.publishes))
        conformance.judge(sc, "foreign")


async def _all_live(tabs, window: float) -> list:
    async def one(tab):
        return None if await tab.wait_for_any_state(("live", "failed"), window) == "live" else tab
    return [t for t in await asyncio.gather(*(one(t) for t in tabs)) if t is not None]


async def _acks_settled(instance, sc, timeout: float = 5.0) -> bool | None:
    """True once the queue holds nothing unacknowledged (nothing is in flight); None if unreadable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # bounded: acks trail emits by a little
        counts = await instance.queue_counts(sc.publisher)
        if counts is None or counts.get("unacked") is None:
            return None
        if counts["ready"] == 0 and counts["unacked"] == 0:
            return True
        await asyncio.sleep(0.1)
    return False


FAILOVER_S = 10.0  # how long the survivors may take to consume again once an instance is dead


async def _kill_round(conformance, cluster, victim: int, round_no: int) -> list:
    """Kill one instance under two tabs per instance; the violations this round found."""
    policy = conformance.settings.reconnect_policy
    replicas = len(cluster.instances)
    violations = []
    balancers = [await cluster.balancer(n % replicas) for n in range(2 * replicas)]
    try:
        async with cluster.scenario() as sc:
            tenant = sc.tenant(f"kill{round_no}")
            tabs = [sc.tab(tenant, url=b.url_for("http"), seed=n, name=f"{tenant}/tab{n + 1}@instance{n % replicas + 1}")
                    for n, b in enumerate(balancers)]
            for tab in tabs:
                await tab.connect()
            victims = [t for n, t in enumerate(tabs) if n % replicas == victim]
            survivors = [t for t in tabs if t not in victims]
            before = [await sc.publish_control(tenant, n) for n in range(3)]
            short = await sc.wait_delivered(tabs, before, sc.grace_s)
            if len(short) == len(tabs):
                conformance.unknown("before the kill no tab received the tenant's events, so what the kill does "
                                    "cannot be told from a cluster that never delivers (see CLU-1)")
            # A tab that missed them now misses them because of its instance, not the kill: CLU-1's.
            conformance.record(f"round {round_no}: tabs that missed events before the kill", sorted(short))
            t_acks = time.perf_counter()
            in_flight_done = await _acks_settled(cluster.instances[victim], sc)
            t0 = time.perf_counter()
            conformance.record_timeline((t_acks - t0) * 1000, f"round {round_no}: tabs connected, events delivered")
            await asyncio.to_thread(cluster.instances[victim].gateway.kill)
            conformance.record_timeline(0, f"round {round_no}: instance {victim + 1} killed (SIGKILL)")
            during = []
            for n in range(5):
                during.append(await sc.publish_control(tenant, 10 + n))
            stuck = await _all_live(victims, policy_window(policy))
            back = time.perf_counter()
            conformance.record_timeline((back - t0) * 1000, f"round {round_no}: {len(victims) - len(stuck)} of "
                                        f"{len(victims)} tabs of the killed instance live again")
            for tab in victims:
                conformance.record_reconnects(schedule_evidence(tab, policy))
            violations += [conformance.violation(
                "Tab of the killed instance did not reconnect within the policy",
                f"{t.name} ended {t.state!r} after {len(t.attempts)} attempts", {"attempts": t.reconnect_schedule()})
                for t in stuck]
            where = {t.name: [cluster.instance_at(a) for a in b.target_of_open()] for t, b in zip(tabs, balancers)}
            conformance.record(f"round {round_no}: instance of each tab after the kill (0-based)", where)
            # Lost (a later event arrived, these did not) is a gap; so is a takeover slower than CLU-5's own
            # failover bound: nothing reached the surviving tabs within it, the cluster stopped consuming.
            takeover_s = FAILOVER_S + sc.grace_s
            settled = await sc.delivery(survivors, during, first_s=takeover_s)
            gap = settled.lost
            violations += [conformance.violation(
                "Gap on a surviving instance", f"{name} (its instance was not killed) never received events {seqs} "
                "published while another instance was dead", {"missing_seqs": seqs}) for name, seqs in gap.items()]
            violations += [conformance.violation(
                "No instance took over", f"{name} (its instance was not killed) received none of events {seqs}, "
                f"published while another instance was dead, within {takeover_s:.1f} s: no surviving instance "
                "consumed the queue meanwhile", {"pending_seqs": seqs}) for name, seqs in settled.pending.items()]
            after = [await sc.publish_control(tenant, 20 + n) for n in range(3)]
            live = [t for t in tabs if t not in stuck]
            settled = await sc.delivery(live, after)
            if settled.still_arriving and not violations:
                conformance.unknown(settled.still_arriving)
            lost = settled.lost
            violations += [conformance.violation(
                "No event after the failover", f"{name} missed events {seqs} published once every tab was back",
                {"missing_seqs": seqs}) for name, seqs in lost.items()]
            # A duplicate of an earlier event is emitted before this one, in queue order: once it is
            # in, any second copy had its chance to show.
            closing = await sc.publish_control(tenant, 99)
            await sc.wait_delivered(live, [closing], sc.grace_s)
            conformance.record_timeline((time.perf_counter() - t0) * 1000, f"round {round_no}: checked")
            # Outside the kill window every event arrives once; events the dead instance may have
            # emitted without acking are inside it (all of them, if the acks could not be read).
            once = [*after, *(before if in_flight_done else [])]
            twice = {t.name: [p.seq for p in once if copies(sc, t, p) > 1] for t in tabs}
            violations += [conformance.violation(
                "Delivered twice outside the kill window", f"{name} received events {seqs} more than once",
                {"seqs": seqs}) for name, seqs in twice.items() if seqs]
            conformance.record(f"round {round_no}", {
                "killed_instance": victim + 1, "tabs_back_after_s": round(back - t0, 2),
                "nothing_in_flight_at_the_kill": in_flight_done,
                "during_window_copies": {t.name: [copies(sc, t, p) for p in during] for t in tabs}})
    finally:
        for b in balancers:
            await b.close()
    await asyncio.to_thread(cluster.instances[victim].gateway.start)
    return violations


@pytest.mark.requirement("CLU-5")
async def test_killing_an_instance_moves_its_clients_and_loses_nothing(conformance):
    conformance.require("restart")
    conformance.cluster  # SKIPPED with one instance
    t_start = time.perf_counter()
    async with conformance.target.dedicated_cluster("kill") as cluster:
        conformance.record("cluster_started_in_s", round(time.perf_counter() - t_start, 2))
        conformance.record("cluster_start", cluster.warm)
        violations = []
        # Each instance is killed once (the first consumes at first, the next after the first
        # came back): whichever instance holds the queue, one round kills it.
        for victim in range(len(cluster.instances)):
            violations += await _kill_round(conformance, cluster, victim, victim + 1)
            if violations:
                break
            t_back = time.perf_counter()
            await cluster.instances[victim].wait_ready()
            conformance.record(f"round {victim + 1}: restarted instance consuming after_s",
                               round(time.perf_counter() - t_back, 2))
        conformance.fail(violations)


@pytest.mark.requirement("CLU-6")
async def test_rest_answers_the_same_whichever_instance_serves_it(conformance):
    conformance.require("rest")
    conformance.require("event-read-model", "it looks for published events in every instance's REST")
    async with conformance.cluster_scenario() as sc:
        tenant = sc.tenant("rest")
        await sc.connect(tenant, tabs=len(sc.urls))
        conv = f"conv_clu_{tenant}"
        sent = [await sc.publish(tenant, "new_message", new_message(conv, f"wamid.clu.{tenant}.{n}", f"message {n}"))
                for n in range(3)]
        await sc.settle()
        token = conformance.tokens.valid(tenant)
        wanted = [p.data["messageId"] for p in sent]
        seen: dict[int, tuple] = {}
        for n, url in enumerate(sc.urls):
            async with RestClient(url, conformance.settings.rest_paths) as rest:
                deadline = time.monotonic() + sc.grace_s
                while True:  # bounded: the read model may trail the emit by a little
                    messages, conversations = await rest.messages(token, conv), await rest.conversations(token)
                    seen[n] = (messages, conversations)
                    if (messages[0] == 200 and all(w in str(messages[1]) for w in wanted)
                            and conv in str(conversations[1])) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
        complete = {n for n, (m, c) in seen.items() if m[0] == 200 and all(w in str(m[1]) for w in wanted)
                    and conv in str(c[1])}
        conformance.record("instances_showing_every_event", sorted(i + 1 for i in complete))
        if not complete:
            conformance.unknown("no instance's REST showed the events, so whether they agree cannot be told "
                                "(see REST-1)")
        violations = [conformance.violation(
            "REST differs by instance", f"instance {n + 1} ({sc.urls[n]}) answered messages {m[0]} "
            f"without {[w for w in wanted if w not in str(m[1])]} or conversations without {conv}, which instance "
            f"{min(complete) + 1} shows", {"messages": m[1], "conversations": c[1]})
            for n, (m, c) in seen.items() if n not in complete]
        conformance.fail(violations)


CLU7_BURST, CLU7_TABS_PER_INSTANCE = 200, 2
CONSUMED_BYTES = 4096  # more than a connection's heartbeats during the burst: this instance took events


@pytest.mark.requirement("CLU-7")
async def test_a_tenants_events_keep_their_order_across_instances(conformance):
    """One tenant's burst, so that however the broker dispatches (round-robin, prefetch windows),
    consecutive events of that tenant can land on different instances. A broker link per instance
    shows which instances took the burst: one alone (a single active consumer, a sharded design)
    is a PASS with that fact recorded."""
    conformance.cluster  # SKIPPED with one instance
    t_start = time.perf_counter()
    async with conformance.target.dedicated_cluster("order", broker_links=True) as cluster:
        conformance.record("cluster_started_in_s", round(time.perf_counter() - t_start, 2))
        conformance.record("cluster_start", cluster.warm)
        links = [i.broker_link for i in cluster.instances]
        async with cluster.scenario() as sc:
            tenant = sc.tenant("order")
            await sc.connect(tenant, tabs=CLU7_TABS_PER_INSTANCE * len(sc.urls))
            before = [link.bytes_to_client if link else None for link in links]
            await asyncio.gather(*(sc.publish_control(tenant, n) for n in range(CLU7_BURST)))
            await sc.settle()
            took = {f"instance {k + 1}": (link.bytes_to_client - b if link and b is not None else None)
                    for k, (link, b) in enumerate(zip(links, before))}
            conformance.record("bytes_each_instance_took_from_the_broker_during_the_burst", took)
            known = [v for v in took.values() if v is not None]
            consumers = [name for name, v in took.items() if v is not None and v > CONSUMED_BYTES]
            conformance.record("instances_that_consumed_the_burst",
                               consumers if len(known) == len(took) else "not observable (no broker link for "
                               "this target kind): judged by order alone")
            if len(consumers) == 1 and len(known) == len(took):
                conformance.record("note", f"{consumers[0]} consumed the whole burst (single active consumer or "
                                   "sharding): order across instances is kept by design")
            conformance.judge(sc, "order")


@pytest.mark.requirement("CLU-7")
async def test_status_updates_keep_their_order_across_instances(conformance):
    async with conformance.cluster_scenario() as sc:
        tenant = sc.tenant("stat")
        await sc.connect(tenant, tabs=len(sc.urls))
        if "status_update" not in sc.control_types:
            conformance.unknown("status_update does not reach a fresh client recognisably (see DLV-6, DLV-1)")
        for n in range(8):
            for value in ("sent", "delivered", "read"):
                await sc.publish(tenant, "status_update", status(f"conv_{n}", f"wamid.order.{tenant}.{n}", value))
        await sc.settle()
        conformance.judge(sc, "order")


@pytest.mark.requirement("CLU-8")
async def test_reconnecting_to_another_instance_misses_nothing(conformance):
    cluster = conformance.cluster
    balancer = await cluster.balancer(0)  # the tab's way in: instance 1 first, while it accepts
    try:
        async with cluster.scenario() as sc:
            tenant = sc.tenant()
            tab = sc.tab(tenant, url=balancer.url_for("http"))
            await tab.connect()
            seen = await sc.publish_control(tenant, 0)
            if await sc.wait_delivered([tab], [seen], sc.grace_s):
                conformance.unknown("the tab received nothing before the disconnect (see CLU-1)")
            balancer.cut()
            await tab.wait_for_state("warning", timeout=5)
            gap = [await sc.publish_control(tenant, n) for n in range(1, 4)]
            balancer.targets.reverse()  # the way back in leads to another instance
            balancer.pass_through()
            if await _all_live([tab], policy_window(conformance.settings.reconnect_policy)):
                conformance.unknown("the tab did not reconnect to another instance (see CLU-5)")
            now_on = [cluster.instance_at(a) for a in balancer.target_of_open()]
            conformance.record("instance_after_reconnect (0-based)", now_on)
            after = await sc.publish_control(tenant, 9)
            if await sc.wait_delivered([tab], [after], sc.grace_s):
                conformance.unknown("the tab did not receive events even after reconnecting (see CLU-1)")
            missed = [p.seq for p in gap if not sc.delivered(tab, p)]
            conformance.record("missed_during_gap", missed)
            conformance.fail([conformance.violation(
                "Events missed when reconnecting to another instance", f"{len(missed)} of {len(gap)} events "
                "published during a sub-second disconnect never arrived once the tab was on another instance "
                "(no shared connection state recovery or replay)", {"missed_seqs": missed}, severity="medium")]
                if missed else [])
    finally:
        await balancer.close()
