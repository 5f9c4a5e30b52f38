"""Generated events are valid by the contract, and bad strategy arguments say how to fix them."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import Phase, given, settings

from realtime_conformance import contract
from realtime_conformance.harness import strategies
FAST = settings(max_examples=50, deadline=None, derandomize=True, database=None)
LIMITS = contract.limits()


def envelope(event_type: str, tenant: str, data: dict) -> bytes:
    """As the harness's publisher (the State Manager) encodes it."""
    return json.dumps({"type": event_type, "tenantId": tenant, "data": data,
                       "timestamp": "2026-01-01T00:00:00.000Z"}, ensure_ascii=False).encode("utf-8")


def test_strategies_cover_the_contracts_event_types() -> None:
    assert strategies.EVENT_TYPES == contract.event_types()
    assert set(strategies._BY_TYPE) == set(contract.event_types())


@pytest.mark.parametrize("event_type", contract.event_types())
def test_event_data_validates_against_its_schema(event_type: str) -> None:
    validator = contract.validator(contract.data_schema_name(event_type))

    @FAST
    @given(data=strategies.event_data(event_type), tenant=strategies.tenant_ids())
    def check(data: dict, tenant: str) -> None:
        errors = [e.message for e in validator.iter_errors(data)]
        assert errors == []
        assert contract.parse_envelope(envelope(event_type, tenant, data))["data"] == data

    check()


@pytest.mark.parametrize("status", strategies.STATUSES)
def test_status_update_per_status(status: str) -> None:
    validator = contract.validator(contract.data_schema_name("status_update"))

    @FAST
    @given(data=strategies.status_update(status))
    def check(data: dict) -> None:
        assert data["status"] == status
        assert ("errors" in data) == (status == "failed")
        assert list(validator.iter_errors(data)) == []

    check()


@FAST
@given(pair=strategies.events())
def test_events_are_valid_envelopes(pair: tuple[str, dict]) -> None:
    event_type, data = pair
    assert event_type in contract.event_types()
    contract.parse_envelope(envelope(event_type, "t_abc123", data))


@FAST
@given(tenant=strategies.tenant_ids())
def test_tenant_ids_within_the_contract(tenant: str) -> None:
    assert 1 <= len(tenant) <= LIMITS.max_tenant_id_length
    contract.parse_envelope(envelope("metrics_update", tenant, {
        "activeConversations": 0, "waitingConversations": 0, "totalMessagesToday": 0,
        "avgResponseTime": 0, "timestamp": "2026-01-01T00:00:00.000Z"}))


@FAST
@given(body=strategies.message_body())
def test_message_body_within_the_limit(body: str) -> None:
    # Code points, as the schema's maxLength counts them; empty text is valid (no minLength).
    assert len(body) <= LIMITS.max_message_text_length


@FAST
@given(body=strategies.message_body(max_length=5))
def test_message_body_custom_limit(body: str) -> None:
    assert len(body) <= 5


@FAST
@given(plan=strategies.plans(max_tenants=4, max_tabs=3, max_events=8))
def test_plans_give_every_tenant_an_event(plan: strategies.Plan) -> None:
    assert 2 <= len(plan.tabs) <= 4
    assert all(1 <= n <= 3 for n in plan.tabs)
    assert len(plan.tabs) <= len(plan.events) <= max(8, len(plan.tabs))
    assert {i for i, _, _ in plan.events} == set(range(len(plan.tabs)))
    for index, event_type, data in plan.events:
        contract.parse_envelope(envelope(event_type, f"t{index}", data))


def test_max_events_is_a_maximum() -> None:
    try:
        strategy = strategies.plans(max_tenants=4, max_tabs=1, max_events=2)
    except ValueError:
        return  # refused when built: an acceptable fix

    @settings(FAST, phases=[Phase.generate])  # no shrinking: this one is expected to fail, fast
    @given(plan=strategy)
    def check(plan: strategies.Plan) -> None:
        assert len(plan.events) <= 2

    check()


@FAST
@given(wamid=strategies.wamid(), phone=strategies.e164(), conv=strategies.conversation_id(),
       url=strategies.media_url())
def test_field_shapes(wamid: str, phone: str, conv: str, url: str | None) -> None:
    assert re.fullmatch(r"wamid\.[A-Za-z0-9=_-]{16,48}", wamid)
    assert re.fullmatch(r"\+[1-9]\d{7,14}", phone)
    assert re.fullmatch(r"conv_[a-z0-9]{6,24}", conv)
    assert url is None or url.startswith("https://media.example/")


BAD_ARGUMENTS = [
    (lambda: strategies.plans(max_tenants=1), "max_tenants=1 must be an int from 2 to 20; e.g. max_tenants=3"),
    (lambda: strategies.plans(max_tabs=0), "max_tabs=0 must be an int from 1 to 10; e.g. max_tabs=3"),
    (lambda: strategies.plans(max_events=501), "max_events=501 must be an int from 4 to 500; e.g. max_events=4"),
    (lambda: strategies.plans(max_tenants=2.5), "max_tenants=2.5 must be an int from 2 to 20; e.g. max_tenants=3"),
    (lambda: strategies.event_data("nope"),
     "event_type='nope' is not one of new_message, conversation_update, status_update, metrics_update"),
    (lambda: strategies.status_update("lost"), "status='lost' is not one of sent, delivered, read, failed"),
    (lambda: strategies.message_body(max_length=10**6),
     f"max_length=1000000 must be an int from 1 to {LIMITS.max_message_text_length}; e.g. max_length=3"),
    (lambda: strategies.message_body(max_length=0), "max_length=0 must be an int from 1 to 4096; e.g. max_length=3"),
    (lambda: strategies.events(("new_message", "nope")),
     "types=('new_message', 'nope'): give a non-empty subset of new_message, conversation_update, status_update, metrics_update"),
    (lambda: strategies.events(()),
     "types=(): give a non-empty subset of new_message, conversation_update, status_update, metrics_update"),
]


@pytest.mark.parametrize("make, message", BAD_ARGUMENTS, ids=[m.split(" ")[0] for _, m in BAD_ARGUMENTS])
def test_bad_arguments_fail_when_built_and_say_the_fix(make, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        make()  # not drawn: the error comes when the strategy is built
    assert str(excinfo.value) == message
