"""MET: dashboard metrics reach their tenant only, from the queue and from the stats endpoints."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, strategies as st

from realtime_conformance.harness import strategies
from realtime_conformance.harness import RestClient
from realtime_conformance.harness.samples import metrics, new_message

# Every suite test is an end-to-end check, and async whatever the project's asyncio_mode.
pytestmark = [pytest.mark.realtime, pytest.mark.asyncio]

NUMBERS = ("activeConversations", "waitingConversations", "totalMessagesToday", "avgResponseTime")


def numbers(data) -> tuple:
    return tuple(data.get(k) for k in NUMBERS) if isinstance(data, dict) else ()


def originated(sc, client, since: float = 0.0) -> list:
    """metrics_update events the gateway made itself (none the harness published), received after ``since``."""
    return [r for r in client.events_named("metrics_update") if r.at >= since and sc.published_as(r.data) is None]


def needs_metrics(conformance) -> None:
    """MET checks observe metrics_update itself: say so when this target does not deliver it."""
    state = conformance.target.delivery_profile.get("metrics_update")
    if state not in (None, "intact", "reshaped"):
        conformance.unknown(f"this check observes metrics_update, which reaches a fresh client as: {state} "
                            "(see DLV-6 and DLV-1)")


@pytest.mark.requirement("MET-1")
@given(batch=st.lists(strategies.metrics_update(), min_size=1, max_size=8))
async def test_metrics_updates_from_the_queue_reach_the_tenant(conformance, batch):
    async with conformance.scenario() as sc:
        tenant, other = sc.tenant(), sc.tenant()
        await sc.connect(tenant, tabs=2)
        await sc.connect(other)
        for data in batch:
            await sc.publish(tenant, "metrics_update", data)
        await sc.publish(other, "metrics_update", metrics(99))
        await sc.settle()
        conformance.judge(sc, "missing")  # every one reached every tab (what they look like is DLV-1's)


@pytest.mark.requirement("MET-5")
async def test_stats_endpoints_answer_and_emit_to_the_tenant_only(conformance):
    conformance.require("rest")
    async with conformance.scenario() as sc, RestClient(conformance.main.url, conformance.settings.rest_paths) as rest:
        tenant, bystander = sc.tenant("stats"), sc.tenant("bystander")
        (client,) = await sc.connect(tenant)
        (other,) = await sc.connect(bystander)
        await sc.publish_control(bystander, 5)  # the bystander's positive control
        token, violations, calls = conformance.tokens.valid(tenant), [], {}
        for n, (name, call, always) in enumerate((("GET stats", rest.stats, False), ("POST refresh", rest.refresh, True))):
            # A new message changes the numbers, so this call's answer differs from anything emitted
            # before it: an old metrics_update (or a duplicate of one) cannot pass for this call's.
            await sc.publish(tenant, "new_message", new_message(f"conv_{tenant}_{n}", f"wamid.{tenant}.{n}", "hi"))
            await sc.settle(barrier=False)
            last = client.events_named("metrics_update")
            started = time.perf_counter()
            status, body = await call(token)
            calls[name] = {"status": status, "answer": numbers(body) if isinstance(body, dict) else body}
            if status != 200 or not isinstance(body, dict) or any(not isinstance(body.get(k), (int, float)) for k in NUMBERS):
                violations.append(conformance.violation(f"{name} did not answer stats", f"{status}: {body!r}", {"body": body}))
                continue
            changed = not last or numbers(last[-1].data) != numbers(body)
            if not (always or changed):
                continue  # the numbers did not change: a GET need not emit
            ok = await client.wait_for(lambda c: any(numbers(r.data) == numbers(body)
                                                     for r in originated(sc, c, since=started)), timeout=sc.grace_s)
            if not ok:
                emitted = [numbers(r.data) for r in originated(sc, client, since=started)]
                violations.append(conformance.violation(
                    f"{name}: no metrics_update with the answer's numbers",
                    f"answered {numbers(body)}; within {sc.grace_s:.1f} s the tenant received "
                    + (f"metrics_update with {emitted}" if emitted else "no metrics_update made by the gateway"),
                    {"answer": body, "emitted_after_the_call": emitted}))
        await sc.settle()  # a leak to the bystander has had its chance to arrive
        leaked = originated(sc, other)
        if leaked:
            violations.append(conformance.violation(
                "Stats emitted to another tenant", f"{bystander} received {len(leaked)} metrics_update made for another tenant",
                {"leaked": leaked[0].data}))
        conformance.record("calls", calls)
        conformance.fail(violations)
        conformance.controls(sc)


@pytest.mark.requirement("MET-4")
async def test_new_conversation_is_followed_by_metrics(conformance):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        (client,) = await sc.connect(tenant)
        # No metrics_update at all is exactly what this requirement is about: judged, not UNKNOWN.
        published = await sc.publish(tenant, "new_message", new_message(f"conv_new_{tenant}", f"wamid.new.{tenant}", "first", new=True))
        # Only what follows the new conversation counts (a gateway may push stats on connect).
        got = await client.wait_for(lambda c: bool(originated(sc, c, since=published.sent_at)), timeout=2.0)
        if not got:
            conformance.fail([conformance.violation("No metrics_update after a new conversation",
                                                    "nothing within 2 s of a new_message with isNewConversation true",
                                                    {"published": published.envelope}, severity="medium")])
        delay_ms = (originated(sc, client, since=published.sent_at)[0].at - published.sent_at) * 1000
        conformance.record("metrics_after_ms", round(delay_ms, 1))
        if delay_ms > 1000:
            conformance.fail([conformance.violation("metrics_update too late",
                                                    f"{delay_ms:.0f} ms after the new conversation (> 1000 ms)",
                                                    severity="medium")])


@pytest.mark.requirement("MET-3")
async def test_refetching_tabs_reach_quiescence(conformance):
    conformance.require("rest")
    async with conformance.scenario() as sc:
        tenant = sc.tenant("dash")
        tabs = [sc.tab(tenant, active_queries={("dashboard-metrics",), ("conversations",)}) for _ in range(3)]
        for tab in tabs:
            await tab.connect()
        # A real change: a new conversation, after which the dashboard must update and then settle.
        await sc.publish(tenant, "new_message", new_message(f"conv_{tenant}", f"wamid.met3.{tenant}", "hello", new=True))
        await sc.publish(tenant, "metrics_update", metrics(3))
        change_at = time.perf_counter()
        quiet = [await tab.wait_quiescent(quiet_for=1.0, timeout=5.0 - (time.perf_counter() - change_at) + 1.0)
                 for tab in tabs]
        conformance.record("stats_requests", [t.stats_requests for t in tabs])
        conformance.record("metrics_updates_received", [t.metrics_updates_received for t in tabs])
        conformance.record("http_requests", [len(t.http_requests) for t in tabs])
        if not any(t.metrics_updates_received for t in tabs):
            needs_metrics(conformance)
            conformance.unknown("positive control: no tab received any metrics_update")
        if not all(quiet):
            conformance.fail([conformance.violation(
                "Refetch loop", f"{quiet.count(False)} of 3 tabs still busy 5 s after the last change: "
                f"{[t.stats_requests for t in tabs]} stats requests, {[t.metrics_updates_received for t in tabs]} metrics_update",
                {"stats_requests": [t.stats_requests for t in tabs]})])


@pytest.mark.requirement("MET-3")
@pytest.mark.background_evidence
async def test_idle_tabs_make_no_requests(conformance):
    """The seed's claim, measured: open tabs with nothing happening make 0 HTTP requests.

    The window (``idle_window_s``, set by the gate level) ran beside the other checks, on a gateway
    instance of its own, when the harness could start one; this test collects what it saw."""
    conformance.require("rest")
    needs_metrics(conformance)
    idle = await conformance.idle_tabs()
    conformance.record("idle_watch", idle.as_dict())
    if not idle.control_arrived:
        conformance.unknown("positive control: the idle tabs did not all receive a metrics_update"
                            + (f" ({idle.error})" if idle.error else ""))
    if not idle.settled:
        conformance.unknown("the tabs never settled after the control event (see the refetch-loop test)")
    if idle.error:
        conformance.unknown(f"the idle window is incomplete: {idle.error}")
    if idle.disconnects:
        conformance.unknown(f"the idle tabs reconnected {idle.disconnects} time(s) during the window, and a "
                            "reconnect refetches (see CONN-1 and RECON-1)")
    window, requests, pushed = idle.window_s, idle.http_requests, idle.socket_events
    conformance.record("idle_requests_per_hour", round(sum(requests) * 3600 / window, 1))
    if any(requests):
        conformance.fail([conformance.violation(
            "Idle tabs make requests", f"3 idle tabs made {requests} HTTP requests in {window:g} s "
            f"({sum(pushed)} socket events pushed meanwhile)", {"requests": requests, "events": pushed})])
