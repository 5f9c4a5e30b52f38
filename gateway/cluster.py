"""What changes when several gateway instances run side by side (REDIS_URL set).

Three things must be shared for N instances to behave like one:

- room broadcasts: python-socketio's AsyncRedisManager carries every emit to
  the other instances, whose clients are in the same tenant room;
- the queue, taken in turn: the queue is declared with RabbitMQ's single active
  consumer, so one instance consumes in queue order (per-tenant order, DLV-5)
  and the others stand by and take over, with the unacked messages, when it dies;
- the "last stats emitted to this tenant" of the GET-stats rule (MET-3), kept in
  Redis and swapped atomically, so a GET on any instance compares with what any
  instance last emitted.

The read model is shared through the SQLite file itself (see readmodel.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Any

import socketio

from .logs import log
from .readmodel import Stats

SINGLE_ACTIVE_CONSUMER = {"x-single-active-consumer": True}
ADAPTER_CHANNEL = "agent-portal-gateway"
LAST_STATS_TTL = 24 * 3600  # seconds; an expired entry costs at most one extra metrics_update
LISTEN_RETRY_START = 0.2
LISTEN_RETRY_MAX = 2.0


class FanoutUnavailable(ConnectionError):
    """An emit could not be handed to Redis: the other instances' clients would miss it.

    The consumer must not ack (nor dead-letter) the message then; it reconnects
    and the broker redelivers it once Redis is back.
    """


class QueueMismatch(RuntimeError):
    """The events queue exists without single active consumer: instances would compete and break order."""


def queue_mismatch_message(queue: str, detail: str) -> str:
    return (
        f"queue {queue!r} already exists with arguments other than x-single-active-consumer=true ({detail}). "
        "With REDIS_URL set, several instances consume it; without single active consumer they would take "
        "messages in parallel and break per-tenant order. Fix: stop the gateways, delete the queue once it is "
        f"drained (e.g. rabbitmqctl delete_queue {queue} --if-empty) and let the gateway declare it, or declare it "
        "yourself as durable with the argument x-single-active-consumer=true; or unset REDIS_URL to run one instance."
    )


class ClusterRedisManager(socketio.AsyncRedisManager):
    """AsyncRedisManager that hands an emit to Redis first and raises if Redis does not take it.

    python-socketio delivers an emit to this instance's tabs, then publishes it, and a publish
    that fails twice is logged and dropped: the other instances' tabs would miss the event
    while the queue message is acked. Here the publish comes first and its failure raises
    ``FanoutUnavailable`` before anyone got the event, so the consumer can leave the message
    for redelivery without duplicating it on this instance's tabs.
    """

    _PUBLISHED = "_published_first"  # marks a message of ours already on Redis; never serialised

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if message.get("host_id") == self.host_id and not message.get(self._PUBLISHED):
            await self._publish_or_raise(message)
            message[self._PUBLISHED] = True  # emit() publishes it next: skipped in _publish
        await super()._handle_emit(message)

    async def _publish(self, data: Any) -> Any:
        if isinstance(data, dict) and data.pop(self._PUBLISHED, False):
            return None
        return await self._publish_or_raise(data)

    async def _publish_or_raise(self, data: Any) -> Any:
        for attempt in (1, 2):
            try:
                if not self.connected:
                    self._redis_connect()
                return await self.redis.publish(self.channel, self.json.dumps(data))
            except Exception as exc:
                self.connected = False
                if attempt == 2:
                    raise FanoutUnavailable(f"cannot publish to Redis: {type(exc).__name__}: {exc}") from exc
        return None

    async def _redis_listen_with_retries(self) -> Any:
        """The subscription, re-made after a Redis outage within LISTEN_RETRY_MAX seconds.

        The library's own loop backs off up to 60 s, and this instance's tabs miss every other
        instance's emits all that time.
        """
        delay = LISTEN_RETRY_START
        while True:
            try:
                self._redis_connect()
                await self.pubsub.subscribe(self.channel)
                delay = LISTEN_RETRY_START
                async for message in self.pubsub.listen():
                    yield message
            except Exception as exc:
                log("Redis subscription lost; other instances' emits miss this instance's tabs until it is back",
                    level=logging.ERROR, retry_in=delay, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, LISTEN_RETRY_MAX)

    async def subscribed(self, timeout: float) -> bool:
        """Start listening now (python-socketio waits for a first client) and wait, bounded, for the subscription.

        An instance that subscribed late would miss the emits of the others made
        between its first client's handshake and its subscription.
        """
        if not self.server.manager_initialized:
            self.server.manager_initialized = True
            self.initialize()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.pubsub is not None and self.pubsub.subscribed:
                await self.redis.ping()  # one more round trip: Redis has read the SUBSCRIBE by now
                return True
            await asyncio.sleep(0.02)
        return False


def client_manager(redis_url: str) -> socketio.AsyncManager:
    """The Socket.IO client manager for a clustered instance."""
    return ClusterRedisManager(redis_url, channel=ADAPTER_CHANNEL)


class RedisLastStats:
    """Several instances: one Redis key per tenant, swapped with SET ... GET (atomic)."""

    def __init__(self, redis_url: str) -> None:
        from redis import asyncio as aioredis  # imported only in cluster mode: one instance needs no redis package

        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

    @staticmethod
    def _key(tenant: str) -> str:
        return f"{ADAPTER_CHANNEL}:last-stats:{tenant}"

    async def swap(self, tenant: str, stats: Stats) -> Stats | None:
        """Remember ``stats`` for ``tenant``; return what any instance remembered before (None if nothing)."""
        raw = await self._redis.set(self._key(tenant), json.dumps(dataclasses.asdict(stats)),
                                    ex=LAST_STATS_TTL, get=True)
        if raw is None:
            return None
        try:
            return Stats(**json.loads(raw))
        except (TypeError, ValueError):
            return None

    async def close(self) -> None:
        await self._redis.aclose()
