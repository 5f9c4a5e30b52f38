"""The supervised AMQP consumer: queue message -> read model -> Socket.IO room -> ack.

Deliveries are handled strictly one at a time in queue order (per-tenant order,
DLV-5), and acked only after the emit (at-least-once, FAULT-3). A body that
breaks the contract, or whose handling raises, is published to ``<queue>.dlq``
with ``x-dlq-reason`` and then acked: never requeued in a loop, never dropped
silently (FAULT-2). A supervisor loop reconnects, re-declares and re-consumes
after any connection loss, backing off 0.5 s doubling to 5 s (FAULT-1); every
wait in it is bounded so a dead broker cannot wedge shutdown.

With several instances (REDIS_URL set) the queue is declared with single active
consumer: every instance subscribes, the broker delivers to one at a time, so
order still holds; when that instance dies its unacked messages go to the next.
The record of emitted bodies then lives in the shared read model, so the next
instance does not emit again what the dead one had already handed to Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import aio_pika
import aiormq
import socketio
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from realtime_conformance import contract

from . import sockets
from .cluster import SINGLE_ACTIVE_CONSUMER, FanoutUnavailable, QueueMismatch, queue_mismatch_message
from .config import Settings
from .logs import log
from .metrics import MetricsPublisher
from .readmodel import ReadModel, body_hash

BACKOFF_START = 0.5
BACKOFF_MAX = 5.0
CONNECT_TIMEOUT = 5.0
OP_TIMEOUT = 10.0
EMITTED_MEMORY = 100_000  # recent body hashes kept to recognise broker redeliveries


class EventConsumer:
    """Consumes the events queue for the lifetime of the gateway."""

    def __init__(self, settings: Settings, sio: socketio.AsyncServer, readmodel: ReadModel,
                 metrics: MetricsPublisher) -> None:
        self.settings = settings
        self.sio = sio
        self.readmodel = readmodel
        self.metrics = metrics
        self.connected = False
        self._stopping = asyncio.Event()
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._started_once = False
        self._emitted: OrderedDict[str, None] = OrderedDict()  # body hashes emitted by this process

    # -- supervision -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, consume until the connection is lost, back off, repeat; until ``stop()``."""
        backoff = BACKOFF_START
        while not self._stopping.is_set():
            try:
                await self._connect_and_consume()
                backoff = BACKOFF_START
                await self._work()
            except (asyncio.CancelledError, QueueMismatch):
                raise  # a queue declared the wrong way for a cluster cannot be fixed by retrying
            except Exception as exc:  # any broker or network failure: reconnect
                log("broker connection failed", level=logging.WARNING, error=f"{type(exc).__name__}: {exc}",
                    retry_in=backoff)
            finally:
                if self.connected:
                    log("broker disconnected", level=logging.WARNING, queue=self.settings.queue)
                self.connected = False
                await self._close_connection()
            if self._stopping.is_set():
                break
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def stop(self) -> None:
        """Finish the message in hand, then let the loop close the connection."""
        self._stopping.set()

    async def _connect_and_consume(self) -> None:
        self._inbox = asyncio.Queue()  # deliveries of a dead channel cannot be acked; the broker requeues them
        self._connection = await asyncio.wait_for(
            aio_pika.connect(self.settings.rabbitmq_url, timeout=CONNECT_TIMEOUT,
                             client_properties={"connection_name": "agent-portal-gateway"}),
            timeout=CONNECT_TIMEOUT + 1,
        )
        queue = await asyncio.wait_for(self._declare(), timeout=OP_TIMEOUT)
        await self._hold_backlog(queue)
        inbox = self._inbox
        await asyncio.wait_for(queue.consume(inbox.put, no_ack=False), timeout=OP_TIMEOUT)
        self.connected = True
        log("consuming", queue=self.settings.queue, dlq=self.settings.dlq, prefetch=self.settings.amqp_prefetch,
            single_active_consumer=self.settings.clustered)

    async def _hold_backlog(self, queue: AbstractQueue) -> None:
        """At process start, let reconnecting clients rejoin their rooms before a backlog is emitted.

        Messages waiting when the gateway starts were published while it was down
        (or were in flight when it was killed). Emitting them at once would reach
        empty rooms, because clients reconnect with a backoff of 0.5 s and more;
        so, only on the process's first consume and only when the queue is not
        empty, wait BACKLOG_GRACE seconds. The messages are safe in the durable
        queue meanwhile (RECON-3, FAULT-3).
        """
        if self._started_once:
            return
        self._started_once = True
        result = getattr(queue, "declaration_result", None)
        waiting = int(getattr(result, "message_count", 0) or 0)
        if waiting == 0 or self.settings.backlog_grace <= 0:
            return
        log("backlog at start-up; letting clients reconnect before consuming", queue=self.settings.queue,
            messages=waiting, grace_seconds=self.settings.backlog_grace)
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=self.settings.backlog_grace)
        except asyncio.TimeoutError:
            pass

    async def _open_channel(self) -> AbstractChannel:
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self.settings.amqp_prefetch)
        self._channel = channel
        return channel

    async def _declare(self) -> AbstractQueue:
        """Declare queue and DLQ durable with no arguments, matching what other tools declare (DLV-8).

        In cluster mode the queue gets x-single-active-consumer, and one that
        exists without it stops the gateway with the fix (QueueMismatch).
        """
        channel = await self._open_channel()
        try:
            if self.settings.clustered:
                queue = await channel.declare_queue(self.settings.queue, durable=True,
                                                    arguments=dict(SINGLE_ACTIVE_CONSUMER))
            else:
                queue = await channel.declare_queue(self.settings.queue, durable=True)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            if self.settings.clustered:
                raise QueueMismatch(queue_mismatch_message(self.settings.queue, str(exc))) from None
            # The queue exists with other arguments (e.g. a quorum queue): use it as it is.
            log("queue exists with other arguments; consuming it as declared", level=logging.WARNING,
                queue=self.settings.queue, error=str(exc))
            channel = await self._open_channel()
            queue = await channel.declare_queue(self.settings.queue, passive=True)
        try:
            await channel.declare_queue(self.settings.dlq, durable=True)
        except aiormq.exceptions.ChannelPreconditionFailed:
            channel = await self._open_channel()
            queue = await channel.get_queue(self.settings.queue, ensure=False)
        return queue

    def _alive(self) -> bool:
        return not (self._connection is None or self._connection.is_closed
                    or self._channel is None or self._channel.is_closed)

    async def _work(self) -> None:
        """Handle deliveries one at a time until the connection dies or we are stopping."""
        while not self._stopping.is_set():
            try:
                # A delivery already waiting is taken without a timer: under load there always is one.
                message = self._inbox.get_nowait()
            except asyncio.QueueEmpty:
                try:
                    message = await asyncio.wait_for(self._inbox.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    if not self._alive():
                        raise ConnectionError("AMQP connection or channel closed")
                    continue
            await self.handle_message(message)

    async def _close_connection(self) -> None:
        conn, self._connection, self._channel = self._connection, None, None
        if conn is not None and not conn.is_closed:
            try:
                await asyncio.wait_for(conn.close(), timeout=3)
            except Exception:
                pass

    # -- one message ---------------------------------------------------------------------------

    async def handle_message(self, message: AbstractIncomingMessage) -> None:
        """Validate, record, emit, then ack; dead-letter what cannot be handled. Patchable seam."""
        body = message.body
        try:
            envelope = contract.parse_envelope(body)
        except contract.EnvelopeError as exc:
            await self.dead_letter(message, exc.reason)
            await asyncio.wait_for(message.ack(), timeout=OP_TIMEOUT)
            return
        try:
            await self.process_envelope(envelope, body, redelivered=bool(message.redelivered))
        except FanoutUnavailable:
            raise  # not the message's fault: leave it unacked, reconnect, and get it again
        except Exception as exc:
            log("event handling failed", level=logging.ERROR, error=f"{type(exc).__name__}: {exc}",
                type=envelope.get("type"), tenant=envelope.get("tenantId"), exc_info=True)
            await self.dead_letter(message, f"handler error: {type(exc).__name__}: {exc}")
        await asyncio.wait_for(message.ack(), timeout=OP_TIMEOUT)

    async def process_envelope(self, envelope: dict[str, Any], body: bytes, redelivered: bool = False) -> None:
        """Apply a valid envelope to the read model (idempotently) and emit it to its tenant's room.

        Every queue message is emitted once, including a second publish of an
        identical body. A broker *redelivery* of a body this process already
        emitted (its ack was lost when the broker crashed) is not emitted again:
        the clients got it. A redelivery after this gateway was killed is
        emitted, because nobody knows whether the dead process's writes reached
        the clients (at-least-once, FAULT-3). In cluster mode an emit is done
        once Redis has it, and the mark is shared: an instance taking over from
        a dead one skips what the dead one had emitted and re-emits the rest.
        """
        tenant, kind, data = envelope["tenantId"], envelope["type"], envelope["data"]
        fresh = self.readmodel.apply(envelope, body)
        key = body_hash(body)
        if redelivered and self._was_emitted(key):
            log("redelivered event already emitted by this process; not emitting again", type=kind, tenant=tenant)
            return
        await sockets.emit_event(self.sio, tenant, kind, data)
        self._remember_emitted(key)
        log("event delivered", level=logging.DEBUG, type=kind, tenant=tenant, fresh=fresh, redelivered=redelivered)
        if kind == "new_message" and data.get("isNewConversation") is True:
            await self.metrics.current(tenant, force=True)

    def _was_emitted(self, key: str) -> bool:
        if key in self._emitted:
            return True
        return self.settings.clustered and self.readmodel.was_emitted(key)

    def _remember_emitted(self, key: str) -> None:
        if self.settings.clustered:
            self.readmodel.mark_emitted(key)
        self._emitted[key] = None
        self._emitted.move_to_end(key)
        while len(self._emitted) > EMITTED_MEMORY:
            self._emitted.popitem(last=False)

    async def dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        """Publish the original body to ``<queue>.dlq`` (persistent, confirmed) with the reason."""
        assert self._channel is not None, "dead_letter needs an open channel"
        headers: dict[str, Any] = {"x-dlq-reason": reason[:1000], "x-original-queue": self.settings.queue}
        if message.routing_key:
            headers["x-original-routing-key"] = message.routing_key
        await asyncio.wait_for(
            self._channel.default_exchange.publish(
                aio_pika.Message(message.body, headers=headers, content_type=message.content_type,
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=self.settings.dlq,
            ),
            timeout=OP_TIMEOUT,
        )
        # Named by its AMQP message_id (when the publisher set one) and its body's hash, so a
        # message can be traced from the publisher's side to this line (FAULT-2).
        log("message dead-lettered", level=logging.WARNING, reason=reason, dlq=self.settings.dlq,
            message_id=message.message_id, bytes=len(message.body), sha256=body_hash(message.body))
