"""The delivery findings over synthetic histories: each fact of one kind, owned by one requirement."""

from __future__ import annotations

from typing import Any

import pytest

from realtime_conformance.harness.judging.checks import ClientView, Publish, canonical, check, normalise

T0 = 1000.0  # publish times are seconds on an arbitrary monotonic clock


def pub(seq: int, tenant: str, type_: str = "new_message", data: Any = None, at: float | None = None) -> Publish:
    data = {"messageId": f"wamid.{tenant}.{seq}", "conversationId": f"conv_{tenant}"} if data is None else data
    envelope = {"type": type_, "tenantId": tenant, "data": data, "timestamp": "2026-01-01T00:00:00.000Z"}
    return Publish(seq, tenant, type_, data, envelope, T0 + seq if at is None else at)


def got(p: Publish, after_ms: float = 10.0, event: str | None = None, data: Any = None) -> tuple[str, Any, float]:
    return (event or p.type, p.data if data is None else data, p.sent_at + after_ms / 1000)


def client(name: str, tenant: str, received: list, connected_at: float | None = 0.0,
           closed_at: float | None = None, expects_events: bool = True) -> ClientView:
    return ClientView(name, tenant, connected_at, closed_at, received, expects_events)


A1, A2, B1 = pub(1, "a"), pub(2, "b", "status_update"), pub(3, "a", "metrics_update", {"activeConversations": 1})
PUBLISHES = [A1, A2, B1]


def clean_clients() -> list[ClientView]:
    return [
        client("a-tab1", "a", [got(A1), got(B1)]),
        client("a-tab2", "a", [got(A1, 20), got(B1, 30)]),
        client("b-tab1", "b", [got(A2, 5)]),
    ]


def reqs(result) -> list[str]:
    return [v.requirement for v in result.violations]


def test_clean_history() -> None:
    r = check(PUBLISHES, clean_clients(), budget_ms=1000)
    assert r.violations == []
    assert r.positive_control is True
    assert r.controls == {"a": 4, "b": 1}
    assert (r.deliveries, r.own_deliveries, r.gateway_originated) == (5, 5, 0)
    assert {k: sorted(round(x, 3) for x in v) for k, v in r.latencies_ms.items()} == {
        "new_message": [10.0, 20.0], "metrics_update": [10.0, 30.0], "status_update": [5.0]}


def test_cross_tenant_delivery_is_iso_1() -> None:
    clients = clean_clients()
    clients[2] = client("b-tab1", "b", [got(A2), got(A1)])
    r = check(PUBLISHES, clients, budget_ms=1000)
    assert reqs(r) == ["ISO-1"]
    v = r.violations[0]
    assert v.title == "Event delivered to another tenant"
    assert v.message == "client b-tab1 of tenant 'b' received event #1 of tenant 'a'"
    assert v.example == {"client": "b-tab1", "client_tenant": "b", "seq": 1, "barrier": False,
                         "published": A1.envelope}
    assert r.for_requirement("ISO-1") == [v]
    assert r.controls == {"a": 4, "b": 1}, "a leaked event is not the victim tenant's positive control"


def test_duplicate_is_dlv_4_only() -> None:
    clients = clean_clients()
    clients[0] = client("a-tab1", "a", [got(A1), got(A1, 15), got(B1)])
    r = check(PUBLISHES, clients, budget_ms=1000)
    assert reqs(r) == ["DLV-4"]
    assert [v.message for v in r.violations] == ["client a-tab1 received event #1 (new_message) 2 times"]
    assert r.violations[0].example["times"] == 2
    assert r.own_deliveries == 5 and r.deliveries == 6


def test_out_of_order_is_dlv_5() -> None:
    clients = clean_clients()
    clients[0] = client("a-tab1", "a", [got(B1), got(A1, 3000)])
    r = check(PUBLISHES, clients, budget_ms=10_000)
    assert reqs(r) == ["DLV-5"]
    v = r.violations[0]
    assert v.message == "client a-tab1 received event #3 before #1, but #1 was published first"
    assert v.example["received_order"] == [3, 1]
    assert (v.example["first"], v.example["second"]) == (A1.envelope, B1.envelope)


def test_missing_event_is_dlv_1_only() -> None:
    clients = clean_clients()
    clients[1] = client("a-tab2", "a", [got(B1)])  # A1 overtaken by B1, published after it: lost
    r = check(PUBLISHES, clients, budget_ms=1000)
    assert reqs(r) == ["DLV-1"]
    v = r.violations[0]
    assert v.title == "Event not delivered"
    assert v.message == ("client a-tab2 (a) missed 1 of its tenant's events, first #1 (new_message), "
                         "though events published after them reached it")
    assert v.example == {"client": "a-tab2", "missing_count": 1, "first_missing": A1.envelope,
                         "missing_types": ["new_message"]}


def test_an_event_nothing_later_overtook_is_pending_for_dlv_2_not_missing() -> None:
    """Late is not lost: with nothing published later received, the event may still be on its way."""
    clients = clean_clients()
    clients[1] = client("a-tab2", "a", [got(A1)])  # B1, the last of its tenant, not (yet) received
    r = check(PUBLISHES, clients, budget_ms=1000)
    assert [f.kind for f in r.findings] == ["pending"]
    assert reqs(r) == ["DLV-2"]
    v = r.violations[0]
    assert v.title == "Event not delivered within the wait (late or lost)"
    assert v.message == ("client a-tab2 (a) had not received 1 of its tenant's events when the wait ended, "
                         "first #3 (metrics_update), nor anything published after them")
    assert v.example == {"client": "a-tab2", "pending_count": 1, "first_pending": B1.envelope, "own_received": 1}


def test_a_barrier_turns_pending_into_missing() -> None:
    barrier = pub(4, "a", "metrics_update", {"activeConversations": 0})
    clients = clean_clients()
    clients[0] = client("a-tab1", "a", [got(A1), got(B1), got(barrier)])
    clients[1] = client("a-tab2", "a", [got(A1), got(barrier)])
    r = check([*PUBLISHES, barrier], clients, budget_ms=1000)
    assert [f.kind for f in r.findings] == ["missing"]


@pytest.mark.parametrize("late", [
    pytest.param({"connected_at": T0 + 2}, id="connected-after-publish"),
    pytest.param({"closed_at": T0 + 2}, id="closed"),
    pytest.param({"connected_at": None}, id="never-connected"),
    pytest.param({"expects_events": False}, id="refused-client"),
])
def test_missing_is_not_blamed_on_clients_that_could_not_expect_it(late: dict) -> None:
    clients = clean_clients() + [client("a-late", "a", [got(B1)], **{"connected_at": 0.0, **late})]
    r = check(PUBLISHES, clients, budget_ms=1000)
    assert r.violations == []


def test_client_connected_exactly_at_publish_expects_it() -> None:
    clients = clean_clients() + [client("a-edge", "a", [got(B1)], connected_at=A1.sent_at)]
    r = check(PUBLISHES, clients, budget_ms=1000)
    assert reqs(r) == ["DLV-1"]


def test_over_budget_is_dlv_2_with_samples_per_type() -> None:
    clients = clean_clients()
    clients[0] = client("a-tab1", "a", [got(A1, 1500), got(B1, 40)])
    r = check(PUBLISHES, clients, budget_ms=1000)
    assert reqs(r) == ["DLV-2"]
    v = r.violations[0]
    assert v.message == "event #1 (new_message) reached a-tab1 after 1500 ms > 1000 ms"
    assert v.example["latency_ms"] == 1500.0
    assert sorted(round(x) for x in r.latencies_ms["new_message"]) == [20, 1500]
    assert sorted(round(x) for x in r.latencies_ms["metrics_update"]) == [30, 40]


def test_budget_is_inclusive() -> None:
    clients = [client("a-tab1", "a", [(A1.type, A1.data, A1.sent_at + 0.25), got(B1)])]
    r = check([A1, B1], clients, budget_ms=250)
    assert r.violations == []


def test_unknown_payload_is_dlv_1() -> None:
    clients = clean_clients()
    clients[0] = client("a-tab1", "a", [got(A1), got(B1), ("new_message", {"messageId": "forged"}, T0 + 5)])
    r = check(PUBLISHES, clients, budget_ms=1000)
    assert reqs(r) == ["DLV-1"]
    v = r.violations[0]
    assert v.title == "Event matches nothing that was published"
    assert v.message == "client a-tab1 (a) received 'new_message' whose payload matches nothing published"
    assert r.unrecognised == {"a-tab1": 1}
    assert v.example["nearest_published"] == A1.envelope
    assert v.example["received"] == {"messageId": "forged"}


def test_gateway_originated_metrics_update_is_not_a_violation() -> None:
    clients = clean_clients()
    clients[2] = client("b-tab1", "b", [got(A2), ("metrics_update", {"activeConversations": 7}, T0 + 9)])
    r = check(PUBLISHES, clients, budget_ms=1000)
    assert r.violations == []
    assert r.gateway_originated == 1
    assert r.own_deliveries == 5 and r.deliveries == 6


def test_int_and_float_compare_equal() -> None:
    p = pub(1, "a", "metrics_update", {"avgResponseTime": 1, "nested": [{"x": 2.0}], "z": 0.5})
    received = {"z": 0.5, "nested": [{"x": 2}], "avgResponseTime": 1.0}
    r = check([p], [client("a-tab1", "a", [("metrics_update", received, p.sent_at + 0.01)])], budget_ms=1000)
    assert r.violations == [] and r.gateway_originated == 0 and r.own_deliveries == 1
    assert normalise({"a": [1.0, 2.5, True]}) == {"a": [1, 2.5, True]}
    assert canonical({"b": 1.0, "a": "é"}) == '{"a":"é","b":1}'


def test_wrong_event_name_is_dlv_1() -> None:
    clients = clean_clients()
    clients[0] = client("a-tab1", "a", [got(A1, event="conversation_update"), got(B1)])
    r = check(PUBLISHES, clients, budget_ms=1000)
    assert reqs(r) == ["DLV-1"]
    v = r.violations[0]
    assert v.title == "Wrong event name"
    assert v.message == "client a-tab1 received event #1 as 'conversation_update'; it was published as 'new_message'"


def test_silent_tenant_fails_the_positive_control() -> None:
    clients = clean_clients()
    clients[2] = client("b-tab1", "b", [])
    r = check(PUBLISHES, clients, budget_ms=1000)
    assert r.positive_control is False
    assert r.controls == {"a": 4, "b": 0}
    assert reqs(r) == ["DLV-2"]  # nothing at all arrived: late cannot be told from lost


def test_nothing_published_is_no_positive_control() -> None:
    r = check([], [client("a-tab1", "a", [])], budget_ms=1000)
    assert r.violations == [] and r.positive_control is False


def marked(seq: int, tenant: str, type_: str = "metrics_update") -> Publish:
    marker = f"2026-01-01T00:00:00.{seq:06d}Z"
    data = {"activeConversations": seq, "timestamp": marker}
    envelope = {"type": type_, "tenantId": tenant, "data": data, "timestamp": "2026-01-01T00:00:00.000Z"}
    return Publish(seq, tenant, type_, data, envelope, T0 + seq, marker=marker)


def test_a_reshaped_event_is_recognised_by_its_marker_and_counts_as_delivered() -> None:
    p = marked(1, "a")
    reshaped = {**p.data, "receivedAt": 123}
    r = check([p], [client("a-tab1", "a", [("metrics_update", reshaped, p.sent_at + 0.01)])], budget_ms=1000)
    assert [f.kind for f in r.findings] == ["altered"]
    assert r.findings[0].example["difference"] == {"added": ["receivedAt"], "removed": [], "changed": []}
    assert r.own_deliveries == 1 and r.positive_control and not r.unrecognised


def test_a_marker_is_found_deep_inside_a_wrapped_payload() -> None:
    p = marked(2, "a")
    wrapped = {"event": "metrics_update", "payload": [p.data]}
    r = check([p], [client("a-tab1", "a", [("metrics_update", wrapped, p.sent_at + 0.01)])], budget_ms=1000)
    assert [f.kind for f in r.findings] == ["altered"] and r.own_deliveries == 1


def test_a_stray_event_of_an_earlier_scenario_is_foreign_not_unrecognised() -> None:
    earlier, mine = marked(7, "old-tenant"), marked(1, "a")
    received = [("metrics_update", earlier.data, T0 + 9), ("metrics_update", mine.data, mine.sent_at + 0.01)]
    r = check([mine], [client("a-tab1", "a", received)], budget_ms=1000, known={earlier.marker: earlier})
    assert [f.kind for f in r.findings] == ["foreign"] and not r.unrecognised


def test_tabs_of_one_token_that_differ_are_siblings_not_missing() -> None:
    p = marked(1, "a")
    tabs = [ClientView("a-tab1", "a", 0.0, None, [("metrics_update", p.data, p.sent_at + 0.01)], True, "token-a"),
            ClientView("a-tab2", "a", 0.0, None, [], True, "token-a")]
    r = check([p], tabs, budget_ms=1000)
    assert [(f.kind, f.client) for f in r.findings] == [("siblings", "a-tab2")]
    assert reqs(r) == ["TAB-1"]


def test_an_event_no_tab_got_is_missing_for_each_not_siblings() -> None:
    p = marked(1, "a")
    tabs = [ClientView(f"a-tab{n}", "a", 0.0, None, [], True, "token-a") for n in (1, 2)]
    later = marked(2, "a")
    tabs = [ClientView(f"a-tab{n}", "a", 0.0, None, [("metrics_update", later.data, T0 + 3)], True, "token-a")
            for n in (1, 2)]
    r = check([p, later], tabs, budget_ms=1000)
    assert [f.kind for f in r.findings] == ["missing", "missing"]
