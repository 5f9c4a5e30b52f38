"""Plain, valid sample payloads for each event type: controls, barriers, probes and simple checks.

Hypothesis strategies (``strategies``) explore payloads; these are the fixed ones a check uses
when the payload itself is not what it judges. ``sample(type, n)`` gives a valid ``data`` of any
type, so a check whose usual control type is not delivered by the target can use another.
"""

from __future__ import annotations

from typing import Any, Callable

from realtime_conformance import contract


def metrics(n: int = 1) -> dict[str, Any]:
    return {"activeConversations": n, "waitingConversations": 0, "totalMessagesToday": n,
            "avgResponseTime": 0, "timestamp": ""}


def new_message(conversation: str, message_id: str, text: str = "Hello!", *, new: bool = False) -> dict[str, Any]:
    return {"conversationId": conversation, "messageId": message_id, "from": "+1234567890",
            "from_name": "John Doe", "message": text, "media_url": None, "timestamp": "",
            "isNewConversation": new}


def conversation_update(conversation: str, text: str = "hi") -> dict[str, Any]:
    return {"id": conversation, "conversationId": conversation, "lastMessage": text,
            "lastMessageAt": "", "direction": "outbound"}


def status(conversation: str, message_id: str, value: str) -> dict[str, Any]:
    data: dict[str, Any] = {"messageId": message_id, "conversationId": conversation, "status": value, "timestamp": ""}
    if value == "failed":
        data["errors"] = [{"code": 131026, "title": "Message undeliverable"}]
    return data


_SAMPLES: dict[str, Callable[[int], dict[str, Any]]] = {
    "metrics_update": metrics,
    "conversation_update": lambda n: conversation_update(f"conv_sample_{n}", f"sample {n}"),
    "new_message": lambda n: new_message(f"conv_sample_{n}", f"wamid.sample.{n}", f"sample {n}"),
    "status_update": lambda n: status(f"conv_sample_{n}", f"wamid.sample.{n}", "delivered"),
}


def sample(event_type: str, n: int = 1) -> dict[str, Any]:
    """A valid ``data`` of ``event_type``; ``n`` varies it."""
    if event_type not in _SAMPLES:
        raise ValueError(f"event_type={event_type!r} is not one of {', '.join(contract.event_types())}")
    return _SAMPLES[event_type](n)
