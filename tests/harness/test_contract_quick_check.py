"""The envelope quick check accepts exactly what the full Envelope schema accepts.

``contract.parse_envelope`` tries the quick route first and falls back to the full validator for
anything it does not accept, so it must never accept something the full schema rejects, and
should accept every valid envelope (else it would be slower, not wrong). Checked on valid events
from the harness's strategies and on arbitrary JSON objects shaped like envelopes.
"""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from realtime_conformance import contract
from realtime_conformance.harness import strategies

FAST = settings(max_examples=200, deadline=None, derandomize=True, database=None)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=8)
KEYS = st.sampled_from(["conversationId", "messageId", "timestamp", "id", "status", "lastMessageAt", "message",
                        "activeConversations", "waitingConversations", "totalMessagesToday", "avgResponseTime",
                        "from", "from_name", "media_url", "isNewConversation", "direction", "lastMessage", "x"])


def _full_accepts(value: dict) -> bool:
    return not list(contract.validator().iter_errors(value))


def test_the_contract_has_a_quick_route():
    assert contract._quick_check() is not None


@FAST
@given(event_type=st.sampled_from(contract.event_types()), data=st.data(), tenant=strategies.tenant_ids())
def test_valid_events_take_the_quick_route(event_type, data, tenant):
    value = {"type": event_type, "tenantId": tenant, "data": data.draw(strategies.event_data(event_type)),
             "timestamp": "2026-01-01T00:00:00.000Z"}
    assert _full_accepts(value) and contract._quick_check()(value)


@FAST
@given(kind=st.sampled_from([*contract.event_types(), "other", ""]) | st.text(max_size=4),
       tenant=st.one_of(st.text(max_size=3), st.integers()), data=st.dictionaries(KEYS, JSON, max_size=6) | JSON,
       stamp=st.one_of(st.just("2026-01-01T00:00:00Z"), st.just(""), st.integers()),
       drop=st.sets(st.sampled_from(["type", "tenantId", "data", "timestamp"]), max_size=2))
def test_quick_route_never_accepts_what_the_schema_rejects(kind, tenant, data, stamp, drop):
    value = {k: v for k, v in {"type": kind, "tenantId": tenant, "data": data, "timestamp": stamp}.items()
             if k not in drop}
    assert contract._quick_check()(value) == _full_accepts(value)
