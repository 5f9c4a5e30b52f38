"""Plays the State Manager: ``publishAgentPortalEvent(type, tenantId, data)`` over real AMQP.

Persistent messages with publisher confirms, so a publish that returns is on the
broker. Also reads the queue's depth with a passive declare (exact, unlike the
management statistics, which lag by seconds).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import aio_pika
import aiormq


def envelope_for(event_type: str, tenant_id: str, data: Any) -> dict[str, Any]:
    """The envelope the State Manager publishes: ``{type, tenantId, data, timestamp}``."""
    return {
        "type": event_type,
        "tenantId": tenant_id,
        "data": data,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def amqp_message(body: bytes, message_id: str | None = None) -> aio_pika.Message:
    """A persistent JSON message with a ``message_id`` of our own.

    Without one, aiormq makes it from the global ``random`` module; when that happens in a thread
    of ours (MET-3's idle watch publishes its control there) while Hypothesis draws a test's
    arguments in the main thread, Hypothesis sees the global random state move during the draw
    and warns ("Do not use the `random` module inside strategies"). ``uuid4`` reads os.urandom."""
    return aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, content_type="application/json",
                            message_id=message_id or uuid.uuid4().hex)


class Publisher:
    """One AMQP connection and confirm-mode channel for publishing to the gateway's queue."""

    def __init__(self, amqp_url: str, queue: str, *, declare: bool = True, confirms: bool = True) -> None:
        self.amqp_url = amqp_url
        self.queue = queue
        self.declare = declare
        # Without confirms a publish returns once written, so one task publishes in order at a
        # high rate (the bench); a lost message then shows as lost, which is what it measures.
        self.confirms = confirms
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None

    async def connect(self, timeout: float = 10.0) -> "Publisher":
        self._connection = await aio_pika.connect(self.amqp_url, timeout=timeout)
        self._channel = await self._connection.channel(publisher_confirms=self.confirms)
        # The gateway declares its queue, with whatever arguments it chose (a dead-letter
        # exchange, a quorum type...): a declaration of ours with other arguments would fail
        # it, so only a queue nobody declared yet is declared here (durable, as DLV-8 wants),
        # so that events published before a consumer exists are kept rather than dropped.
        if self.declare and await self.queue_state() is None:
            try:
                await self._channel.declare_queue(self.queue, durable=True)
            except aiormq.exceptions.ChannelPreconditionFailed:  # declared meanwhile, otherwise
                self._channel = await self._connection.channel(publisher_confirms=self.confirms)
        return self

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()
        self._connection = self._channel = None

    async def __aenter__(self) -> "Publisher":
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def publish_body(self, body: bytes, *, queue: str | None = None, message_id: str | None = None) -> float:
        """Publish raw bytes (valid or not); returns perf_counter() taken just before sending.

        ``message_id`` sets the AMQP message_id property: a name the gateway can log a message by
        (FAULT-2 looks for it when the gateway has no dead-letter queue)."""
        if self._channel is None:
            raise RuntimeError("Publisher.connect() first")
        message = amqp_message(body, message_id)
        sent_at = time.perf_counter()
        await self._channel.default_exchange.publish(message, routing_key=queue or self.queue, timeout=10)
        return sent_at

    async def publish_envelope(self, envelope: dict[str, Any]) -> float:
        """Publish one envelope as JSON; returns its send time."""
        return await self.publish_body(json.dumps(envelope, ensure_ascii=False).encode("utf-8"))

    async def publish_event(self, event_type: str, tenant_id: str, data: Any) -> tuple[dict[str, Any], float]:
        """The State Manager's publishAgentPortalEvent; returns the envelope and its send time."""
        envelope = envelope_for(event_type, tenant_id, data)
        return envelope, await self.publish_envelope(envelope)

    @contextlib.asynccontextmanager
    async def _scratch_channel(self) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
        """A channel of its own for one inspection: a failed declare closes its channel, never ours."""
        if self._connection is None:
            raise RuntimeError("Publisher.connect() first")
        channel = await self._connection.channel()
        try:
            yield channel
        finally:
            if not channel.is_closed:
                await channel.close()

    async def queue_state(self, queue: str | None = None) -> tuple[int, int] | None:
        """(ready messages, consumers) of a queue by passive declare; None if it does not exist."""
        async with self._scratch_channel() as channel:
            try:
                declared = await channel.declare_queue(queue or self.queue, passive=True)
            except (aio_pika.exceptions.ChannelClosed, aiormq.exceptions.ChannelNotFoundEntity):
                return None
            result = declared.declaration_result
            return int(result.message_count), int(result.consumer_count)

    async def queue_is_durable(self, queue: str | None = None) -> bool | None:
        """Durability by equivalent re-declarations, for brokers that cannot be asked (no management
        API): one with no arguments is accepted only if durability matches. None when neither form
        is accepted (the queue has arguments of its own) or the queue does not exist."""
        if await self.queue_state(queue) is None:
            return None
        for durable in (True, False):
            async with self._scratch_channel() as channel:
                try:
                    await channel.declare_queue(queue or self.queue, durable=durable)
                    return durable
                except aiormq.exceptions.ChannelPreconditionFailed:
                    continue
        return None

    async def drain(self, queue: str, timeout: float = 2.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Take every message currently in ``queue`` (e.g. a dead-letter queue) and ack them."""
        taken: list[aio_pika.abc.AbstractIncomingMessage] = []
        async with self._scratch_channel() as channel:
            try:
                q = await channel.declare_queue(queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return taken
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                message = await q.get(fail=False, no_ack=True)
                if message is None:
                    break
                taken.append(message)
        return taken
