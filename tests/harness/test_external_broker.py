"""An external broker's exact queue counts come from its management API (DLV-7, FAULT-2 need unacked)."""

from __future__ import annotations

import asyncio
import time

import aio_pika

from realtime_conformance.harness.providers.broker import ExternalBroker, PrivateRabbitNode


def test_counts_come_from_the_management_api_and_none_without_it():
    node = PrivateRabbitNode().with_management()
    try:
        node.start()
        queue = "rtc.counts"

        async def publish_and_hold() -> aio_pika.abc.AbstractConnection:
            connection = await aio_pika.connect(node.amqp_url)
            channel = await connection.channel()
            q = await channel.declare_queue(queue, durable=True)
            for n in range(3):
                await channel.default_exchange.publish(aio_pika.Message(b"%d" % n), routing_key=queue)
            consumer_channel = await connection.channel()
            await consumer_channel.set_qos(prefetch_count=1)
            held = await consumer_channel.declare_queue(queue, passive=True)
            await held.get(no_ack=False)  # taken, not acked: one unacknowledged message
            del q
            return connection

        loop = asyncio.new_event_loop()
        connection = loop.run_until_complete(publish_and_hold())
        broker = ExternalBroker(node.amqp_url, api_url=node.management_url)
        counts, deadline = None, time.monotonic() + 20
        while time.monotonic() < deadline:  # management statistics trail by about 5 s
            counts = broker.queue_counts(queue)
            if counts == {"ready": 2, "unacked": 1}:
                break
            time.sleep(0.5)
        assert counts == {"ready": 2, "unacked": 1}
        assert ExternalBroker(node.amqp_url, api_url="http://127.0.0.1:9").queue_counts(queue) is None
        loop.run_until_complete(connection.close())
        loop.close()
    finally:
        node.close()
