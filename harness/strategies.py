"""Hypothesis strategies for realistic agent-portal events and multi-tenant scenarios.

Payloads look like what the State Manager really sends: wamid ids, E.164
numbers, unicode names and bodies (emoji, right-to-left text, up to the
contract's length limit), media URLs, the four statuses with failed's error
objects. Every generated ``data`` validates against the contract.
Arguments are checked when the strategy is built, with errors that say the fix.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass

from hypothesis import strategies as st

from realtime_conformance import contract

EVENT_TYPES: tuple[str, ...] = contract.event_types()
STATUSES = ("sent", "delivered", "read", "failed")
_LIMITS = contract.limits()

_WORDS = st.sampled_from([
    "Hello", "Olá", "مرحبا", "שלום", "你好", "Привет", "नमस्ते", "👋", "🎉🎉", "ok", "order #42",
    "\u202eRTL override", "line\nbreak", "tab\tchar", "quote \" and \\ backslash", "<b>not html</b>",
])
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


def _check_size(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}={value!r} must be an int from {low} to {high}; "
                         f"e.g. {name}={min(max(low, 3), high)}")


def wamid() -> st.SearchStrategy[str]:
    """A WhatsApp message id: ``wamid.`` and a base64-ish body."""
    return st.text(string.ascii_letters + string.digits + "=_-", min_size=16, max_size=48).map(lambda s: f"wamid.{s}")


def e164() -> st.SearchStrategy[str]:
    """A phone number in E.164 form: + then 8 to 15 digits, not starting with 0."""
    return st.tuples(st.integers(1, 9), st.text(string.digits, min_size=7, max_size=14)).map(lambda t: f"+{t[0]}{t[1]}")


def message_body(max_length: int | None = None) -> st.SearchStrategy[str]:
    """Message text: words in many scripts, emoji, control-ish characters, up to the contract's limit."""
    limit = _LIMITS.max_message_text_length if max_length is None else max_length
    _check_size("max_length", limit, 1, _LIMITS.max_message_text_length)
    words = st.lists(st.one_of(_WORDS, _TEXT), min_size=1, max_size=8).map(" ".join)
    longest = st.just("x" * (limit - 2) + "🎉")  # the limit counts code points, not bytes
    return st.one_of(words, longest).map(lambda s: s[:limit])


def conversation_id() -> st.SearchStrategy[str]:
    return st.text(string.ascii_lowercase + string.digits, min_size=6, max_size=24).map(lambda s: f"conv_{s}")


def media_url() -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.builds(
        "https://media.example/{}/{}.{}".format,
        st.text(string.ascii_lowercase, min_size=1, max_size=12), st.uuids(), st.sampled_from(["jpg", "ogg", "pdf"])))


def iso_timestamp() -> st.SearchStrategy[str]:
    return st.datetimes().map(lambda d: d.isoformat(timespec="milliseconds") + "Z")


def new_message() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({
        "conversationId": conversation_id(), "messageId": wamid(), "from": e164(),
        "from_name": st.one_of(st.none(), _WORDS, _TEXT), "message": st.one_of(st.none(), message_body()),
        "media_url": media_url(), "timestamp": iso_timestamp(), "isNewConversation": st.booleans(),
    })


def conversation_update() -> st.SearchStrategy[dict]:
    return conversation_id().flatmap(lambda cid: st.fixed_dictionaries({
        "id": st.just(cid), "conversationId": st.just(cid), "lastMessage": st.one_of(st.none(), message_body()),
        "lastMessageAt": iso_timestamp(), "direction": st.sampled_from(["inbound", "outbound"]),
    }))


def status_error() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({
        "code": st.sampled_from([131026, 131047, 131051, 470, 131000]),
        "title": st.sampled_from(["Message undeliverable", "Re-engagement message", "Unsupported message type"]),
    }, optional={"message": _TEXT})


def status_update(status: str | None = None) -> st.SearchStrategy[dict]:
    """A status_update; ``failed`` ones carry WhatsApp's error objects."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status={status!r} is not one of {', '.join(STATUSES)}")
    statuses = st.just(status) if status else st.sampled_from(STATUSES)

    def build(s: str) -> st.SearchStrategy[dict]:
        base = {"messageId": wamid(), "conversationId": conversation_id(), "status": st.just(s),
                "timestamp": iso_timestamp()}
        if s == "failed":
            base["errors"] = st.lists(status_error(), min_size=1, max_size=2)
        return st.fixed_dictionaries(base)

    return statuses.flatmap(build)


def metrics_update() -> st.SearchStrategy[dict]:
    counts = st.integers(0, 10_000)
    return st.fixed_dictionaries({
        "activeConversations": counts, "waitingConversations": counts, "totalMessagesToday": counts,
        "avgResponseTime": st.one_of(st.integers(0, 86_400), st.floats(0, 86_400, allow_nan=False).map(lambda f: round(f, 3))),
        "timestamp": iso_timestamp(),
    })


_BY_TYPE = {"new_message": new_message, "conversation_update": conversation_update,
            "status_update": status_update, "metrics_update": metrics_update}


def event_data(event_type: str) -> st.SearchStrategy[dict]:
    """``data`` for one event type."""
    if event_type not in _BY_TYPE:
        raise ValueError(f"event_type={event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    return _BY_TYPE[event_type]()


def events(types: tuple[str, ...] = EVENT_TYPES) -> st.SearchStrategy[tuple[str, dict]]:
    """(type, data) pairs over the given event types."""
    unknown = [t for t in types if t not in _BY_TYPE]
    if not types or unknown:
        raise ValueError(f"types={types!r}: give a non-empty subset of {', '.join(EVENT_TYPES)}")
    return st.sampled_from(types).flatmap(lambda t: event_data(t).map(lambda d: (t, d)))


def tenant_ids() -> st.SearchStrategy[str]:
    """Tenant ids that look like room names or patterns (ISO-3), plus ordinary ones."""
    longest = _LIMITS.max_tenant_id_length
    return st.one_of(
        st.sampled_from(["a:b", "*", "tenant:x", "tenant:*", "#", "t_abc123", "租户-1", "ⓣⓔⓝⓐⓝⓣ", "a/b", "..", " x "]),
        st.just("L" * (longest - 8)),
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=24),
    )


@dataclass(frozen=True)
class Plan:
    """A generated multi-tenant scenario: tabs per tenant and an interleaving of events."""

    tabs: tuple[int, ...]  # tabs[i] = number of tabs of tenant i
    events: tuple[tuple[int, str, dict], ...]  # (tenant index, type, data), in publish order


def plans(*, max_tenants: int = 4, max_tabs: int = 3, max_events: int = 24) -> st.SearchStrategy[Plan]:
    """Tenants x tabs x interleaved events; every tenant gets at least one event (its positive control)."""
    _check_size("max_tenants", max_tenants, 2, 20)
    _check_size("max_tabs", max_tabs, 1, 10)
    _check_size("max_events", max_events, max_tenants, 500)  # every tenant gets its positive control

    @st.composite
    def build(draw: st.DrawFn) -> Plan:
        tabs = tuple(draw(st.lists(st.integers(1, max_tabs), min_size=2, max_size=max_tenants)))
        n = len(tabs)
        own = [(i, *draw(events())) for i in range(n)]  # one per tenant: the positive controls
        extra = draw(st.lists(st.tuples(st.integers(0, n - 1), events()), max_size=max(0, max_events - n)))
        mixed = own + [(i, t, d) for i, (t, d) in extra]
        order = draw(st.permutations(range(len(mixed))))
        return Plan(tabs, tuple(mixed[k] for k in order))

    return build()


# -- the Socket.IO / Engine.IO framing grammar, valid and not (ROB-1) ------------------------------

_JSON_FRAGMENTS = st.sampled_from([
    "", "[", "]", "{", "}", "[]", "{}", '"', '"x', "null", "1", "-0", "1e999", "true", "[[[[[[[[", '["a"', '["a",',
    '{"_placeholder":true,"num":', '{"_placeholder":true}', '"\\ud800"', "\u0000", ",", ":", "NaN",
])


def engineio_text_frames() -> st.SearchStrategy[str]:
    """Text frames a broken or hostile client may send on an Engine.IO v4 connection after its
    Socket.IO CONNECT: an Engine.IO type digit (valid or not), then for message packets a Socket.IO
    type digit, an optional attachment count, an optional namespace, an optional ack id and a
    payload built from JSON fragments or noise. Most are malformed; some are valid by chance."""
    eio_type = st.sampled_from("0123456789x")
    sio_type = st.sampled_from("0123456789")
    attachments = st.one_of(st.just(""), st.integers(0, 3).map(lambda n: f"{n}-"),
                            st.sampled_from(["-", "x-", "99999999999999999999-"]))
    namespace = st.one_of(st.just(""), st.sampled_from(["/,", "/admin,", "/nope,", "/%,", ",", "/" + "n" * 300 + ","]))
    ack = st.one_of(st.just(""), st.integers(0, 2**53).map(str), st.just("99999999999999999999999"))
    payload = st.one_of(
        st.lists(_JSON_FRAGMENTS, max_size=6).map("".join),
        st.builds(lambda name, args: json.dumps([name, *args]),
                  st.sampled_from(["error", "connect", "disconnect", "disconnecting", "newListener", "", "x"]),
                  st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=8),
                                     st.fixed_dictionaries({"_placeholder": st.booleans(),
                                                            "num": st.one_of(st.integers(-2, 5), st.text(max_size=3))})),
                           max_size=3)),
        _TEXT,
    )
    message = st.builds(lambda t, a, n, i, p: f"4{t}{a}{n}{i}{p}", sio_type, attachments, namespace, ack, payload)
    other = st.builds(lambda t, p: t + p, eio_type, payload)
    return st.one_of(message, other)


def noise_frames() -> st.SearchStrategy[bytes]:
    """Binary frames and byte noise where Engine.IO expects text."""
    return st.binary(max_size=64)
