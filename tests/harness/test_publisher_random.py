"""The harness's own threads must leave Python's global ``random`` alone while Hypothesis draws.

MET-3's idle watch publishes from a thread of its own while generated checks draw their
arguments in the main thread. aiormq gives a message without a ``message_id`` one from
``random.getrandbits``; Hypothesis sees the global state move during a draw and emits a
HypothesisDeprecationWarning, which ``-W error::hypothesis.errors.HypothesisDeprecationWarning``
turns into a failed check. Every message the harness publishes therefore brings its own id.
"""

from __future__ import annotations

import random

from realtime_conformance.harness.wire.publisher import amqp_message


def test_every_message_has_its_own_id_without_touching_global_random() -> None:
    before = random.getstate()
    ids = {amqp_message(b"{}").message_id for _ in range(50)}
    assert random.getstate() == before
    assert len(ids) == 50 and all(isinstance(i, str) and len(i) == 32 for i in ids)


def test_the_message_is_what_the_gateway_expects() -> None:
    message = amqp_message(b'{"type": "new_message"}')
    assert (message.body, message.content_type, int(message.delivery_mode)) == (
        b'{"type": "new_message"}', "application/json", 2)
