"""The State Manager's side of a step, in a process of its own: publish prepared bodies on schedule.

Publishing through aio-pika costs the harness a few hundred microseconds per message; in the
clients' process that would both cap the rate and delay every receive stamp behind it. A child
process (spawned, daemonic, joined or killed when done) does it on the other core instead and
returns each message's send stamp. Stamps are ``time.perf_counter()``, which on Linux reads
CLOCK_MONOTONIC: one clock for every process of the machine, so the child's send stamps and the
parent's receive stamps subtract exactly (no wall clock, no NTP involved).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Sequence

START_TIMEOUT_S = 30.0


async def _publish_all(amqp_url: str, queue: str, bodies: Sequence[bytes], rate: float) -> tuple[list[float], int]:
    from realtime_conformance.harness.wire.publisher import Publisher

    sent: list[float] = []
    errors = 0
    async with Publisher(amqp_url, queue, confirms=False) as publisher:
        started = time.perf_counter()
        for i, body in enumerate(bodies):
            wait = started + i / rate - time.perf_counter()
            await asyncio.sleep(wait if wait > 0 else 0)  # the schedule is the load itself
            try:
                sent.append(await publisher.publish_body(body))
            except Exception:  # counted; the caller treats the event as never published
                sent.append(float("nan"))
                errors += 1
    return sent, errors


def _child(amqp_url: str, queue: str, bodies: Sequence[bytes], rate: float, conn: "multiprocessing.connection.Connection") -> None:
    try:
        sent, errors = asyncio.run(_publish_all(amqp_url, queue, bodies, rate))
        conn.send(("ok", sent, errors))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}", 0))
    finally:
        conn.close()


async def publish_in_child(amqp_url: str, queue: str, bodies: Sequence[bytes], rate: float,
                           timeout: float) -> tuple[list[float], int]:
    """Publish ``bodies`` at ``rate`` a second from a child process; (send stamps, errors).

    Bounded: the child gets ``timeout`` seconds past its own start-up, then it is killed."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(amqp_url, queue, list(bodies), rate, sender), daemon=True,
                          name="rtc-bench-publisher")
    process.start()
    sender.close()
    try:
        ready = await asyncio.to_thread(receiver.poll, START_TIMEOUT_S + timeout)
        if not ready:
            raise TimeoutError(f"the publisher process did not finish within {START_TIMEOUT_S + timeout:.0f} s")
        status, payload, errors = receiver.recv()
    finally:
        receiver.close()
        await asyncio.to_thread(process.join, 5)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join, 5)
    if status != "ok":
        raise RuntimeError(f"the publisher process failed: {payload}")
    return payload, errors
