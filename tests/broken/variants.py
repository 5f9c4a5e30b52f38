"""Deliberately broken gateways: the reference gateway with exactly one behaviour patched.

Each variant is a function that monkeypatches one seam of ``gateway`` (see
gateway/README.md). They live here, not in gateway/, so the reference gateway
never carries a switch to break itself. ``launch.py`` applies one and runs it.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs

import jwt

from gateway import auth, consumer, metrics, origins, readmodel, sockets

VARIANTS: dict[str, Callable[[], None]] = {}


def variant(fn: Callable[[], None]) -> Callable[[], None]:
    VARIANTS[fn.__name__] = fn
    return fn


_emit = sockets.emit_event


@variant
def none() -> None:
    """The reference gateway, unpatched: the control."""


@variant
def leak_across_tenants() -> None:
    async def emit(sio, tenant_id, event_type, data):
        await sio.emit(event_type, data)  # no room: every connected client of every tenant
    sockets.emit_event = emit


def _claims_unverified(token: str, settings) -> auth.Claims:
    payload = jwt.decode(token, options={"verify_signature": False})
    return auth.Claims(tenant_id=payload[settings.jwt_tenant_claim], exp=payload.get("exp"), raw=payload)


@variant
def accept_expired() -> None:
    verify = auth.verify_token

    def lenient(token, settings):
        try:
            return verify(token, settings)
        except auth.AuthError as exc:
            if exc.code != "token_expired":
                raise
            claims = _claims_unverified(token, settings)
            return auth.Claims(claims.tenant_id, None, raw=claims.raw)
    auth.verify_token = lenient


@variant
def accept_alg_none() -> None:
    verify = auth.verify_token

    def lenient(token, settings):
        if isinstance(token, str) and jwt.get_unverified_header(token).get("alg") == "none":
            return _claims_unverified(token, settings)
        return verify(token, settings)
    auth.verify_token = lenient


@variant
def lookalike_origin() -> None:
    def prefix_match(origin, allowed):
        return origin is None or any(origin.startswith(a) for a in allowed)
    origins.origin_allowed = prefix_match


@variant
def token_from_query() -> None:
    def from_query_too(auth_payload, environ):
        if isinstance(auth_payload, dict) and auth_payload.get("token"):
            return auth_payload["token"]
        return parse_qs(environ.get("QUERY_STRING", "")).get("token", [None])[0]
    sockets.extract_token = from_query_too


@variant
def drop_event_type() -> None:
    async def emit(sio, tenant_id, event_type, data):
        if event_type != "status_update":
            await _emit(sio, tenant_id, event_type, data)
    sockets.emit_event = emit


@variant
def alter_payload() -> None:
    async def emit(sio, tenant_id, event_type, data):
        await _emit(sio, tenant_id, event_type, {**data, "receivedAt": time.time()} if isinstance(data, dict) else data)
    sockets.emit_event = emit


@variant
def emit_twice() -> None:
    async def emit(sio, tenant_id, event_type, data):
        await _emit(sio, tenant_id, event_type, data)
        await _emit(sio, tenant_id, event_type, data)
    sockets.emit_event = emit


@variant
def reverse_order() -> None:
    """Swaps each tenant's events in pairs (a lone event goes out after 50 ms)."""
    held: dict[str, tuple[Any, ...]] = {}

    async def flush_later(tenant_id, item):
        await asyncio.sleep(0.05)
        if held.get(tenant_id) is item:
            del held[tenant_id]
            await _emit(*item)

    async def emit(sio, tenant_id, event_type, data):
        item = (sio, tenant_id, event_type, data)
        older = held.pop(tenant_id, None)
        if older is not None:  # the one waiting goes out after the newer one
            await _emit(*item)
            await _emit(*older)
        else:
            held[tenant_id] = item
            asyncio.get_running_loop().create_task(flush_later(tenant_id, item))
    sockets.emit_event = emit


@variant
def delay_1500ms() -> None:
    async def later(sio, tenant_id, event_type, data):
        await asyncio.sleep(1.5)
        await _emit(sio, tenant_id, event_type, data)

    async def emit(sio, tenant_id, event_type, data):
        asyncio.get_running_loop().create_task(later(sio, tenant_id, event_type, data))
    sockets.emit_event = emit


@variant
def status_without_conversation() -> None:
    async def emit(sio, tenant_id, event_type, data):
        if event_type == "status_update" and isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "conversationId"}
        await _emit(sio, tenant_id, event_type, data)
    sockets.emit_event = emit


@variant
def stats_to_all_tenants() -> None:
    async def current(self, tenant, *, force):
        stats = self._readmodel.stats(tenant)
        payload = stats.as_payload(metrics.utc_now_iso())
        if force or metrics.should_emit_stats(self._last.get(tenant), stats):
            self._last[tenant] = stats
            await self._sio.emit("metrics_update", payload)  # to every tenant's tabs
        return payload
    metrics.MetricsPublisher.current = current


@variant
def stats_emit_every_read() -> None:
    metrics.should_emit_stats = lambda last, current: True


@variant
def periodic_metrics() -> None:
    """Pushes fresh stats to every room every 2 s, whether or not anything changed."""
    handle = consumer.EventConsumer.process_envelope

    async def tick(self):
        while True:
            await asyncio.sleep(2.0)
            for room in list(self.sio.manager.rooms.get("/", {})):
                if isinstance(room, str) and room.startswith("tenant:"):
                    await self.metrics.current(room.removeprefix("tenant:"), force=True)

    async def process(self, envelope, body, redelivered=False):
        if not getattr(self, "_ticking", False):
            self._ticking = True
            asyncio.get_running_loop().create_task(tick(self))
        await handle(self, envelope, body, redelivered)
    consumer.EventConsumer.process_envelope = process


@variant
def consumer_not_reregistered() -> None:
    first = consumer.EventConsumer._connect_and_consume

    async def connect_and_forget(self):
        if not getattr(self, "_consumed_once", False):
            self._consumed_once = True
            return await first(self)
        # Reconnects, but never registers the consumer again.
        import aio_pika
        self._connection = await aio_pika.connect(self.settings.rabbitmq_url, timeout=5)
        await self._open_channel()
        self.connected = True
    consumer.EventConsumer._connect_and_consume = connect_and_forget


@variant
def ack_before_emit() -> None:
    """Acks each message on receipt, then works through its in-process backlog: a kill loses it."""
    import aio_pika

    async def connect_ack_on_receipt(self):
        self._inbox = asyncio.Queue()
        self._connection = await aio_pika.connect(self.settings.rabbitmq_url, timeout=5)
        queue = await self._declare()
        inbox = self._inbox

        async def take(message):
            await message.ack()  # before the work is done
            await inbox.put(message)
        await queue.consume(take, no_ack=False)
        self.connected = True

    async def handle(self, message):
        try:
            envelope = consumer.contract.parse_envelope(message.body)
        except consumer.contract.EnvelopeError as exc:
            await self.dead_letter(message, exc.reason)
            return
        await asyncio.sleep(0.005)  # a read-model write's worth of work
        await self.process_envelope(envelope, message.body, redelivered=bool(message.redelivered))
    consumer.EventConsumer._connect_and_consume = connect_ack_on_receipt
    consumer.EventConsumer.handle_message = handle


@variant
def poison_requeued_forever() -> None:
    handle = consumer.EventConsumer.handle_message

    async def requeue(self, message):
        try:
            consumer.contract.parse_envelope(message.body)
        except consumer.contract.EnvelopeError:
            await message.nack(requeue=True)
            return
        await handle(self, message)
    consumer.EventConsumer.handle_message = requeue


@variant
def poison_kills_consumer() -> None:
    handle = consumer.EventConsumer.handle_message

    async def die(self, message):
        try:
            consumer.contract.parse_envelope(message.body)
        except consumer.contract.EnvelopeError:
            self._stopping.set()  # the consumer gives up for good; HTTP and sockets stay up
            return
        await handle(self, message)
    consumer.EventConsumer.handle_message = die


@variant
def slow_restart() -> None:
    database = Path(os.environ.get("DATABASE_PATH", "./data/gateway.sqlite3"))
    if database.exists():  # a restart: come back later than any reconnect policy waits
        time.sleep(float(os.environ.get("SLOW_RESTART_S", "28")))


@variant
def expiry_not_enforced() -> None:
    sockets.expiry_delay = lambda claims, now=None: None


@variant
def readmodel_lost_on_restart() -> None:
    database = Path(os.environ.get("DATABASE_PATH", "./data/gateway.sqlite3"))
    for suffix in ("", "-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)


def _furthest_is_last(current, new):
    return new


@variant
def status_last_write_wins() -> None:
    readmodel.furthest_status = _furthest_is_last
