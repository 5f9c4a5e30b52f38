"""The State Manager's side of a step, in a process of its own: publish prepared bodies on schedule.

Publishing through aio-pika costs the harness a few hundred microseconds per message; in the
clients' process that would both cap the rate and delay every receive stamp behind it. A child
process (spawned, daemonic, joined or killed when done) does it on the other core instead and
returns each message's send stamp. When one process cannot keep the rate, several share it
(``--bench-publishers``), split by tenant so each tenant's events still leave in order. Stamps are ``time.perf_counter()``, which on Linux reads
CLOCK_MONOTONIC: one clock for every process of the machine, so the child's send stamps and the
parent's receive stamps subtract exactly (no wall clock, no NTP involved).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Sequence

START_TIMEOUT_S = 30.0


async def _publish_all(amqp_url: str, queue: str, bodies: Sequence[bytes], offsets: Sequence[float],
                       conn: "multiprocessing.connection.Connection") -> tuple[list[float], int, float]:
    from realtime_conformance.harness.wire.publisher import Publisher

    sent: list[float] = []
    errors = 0
    async with Publisher(amqp_url, queue, confirms=False) as publisher:
        conn.send(("ready", None, 0, 0.0))  # connected: the parent starts every publisher at one instant
        started = (await asyncio.to_thread(conn.recv))[1]
        cpu0 = time.process_time()  # from the go on: start-up and connect are not a publish's cost
        for offset, body in zip(offsets, bodies):
            wait = started + offset - time.perf_counter()
            await asyncio.sleep(wait if wait > 0 else 0)  # the schedule is the load itself
            try:
                sent.append(await publisher.publish_body(body))
            except Exception:  # counted; the caller treats the event as never published
                sent.append(float("nan"))
                errors += 1
        cpu = time.process_time() - cpu0
    return sent, errors, cpu


def _child(amqp_url: str, queue: str, bodies: Sequence[bytes], offsets: Sequence[float],
           conn: "multiprocessing.connection.Connection") -> None:
    try:
        sent, errors, cpu = asyncio.run(_publish_all(amqp_url, queue, bodies, offsets, conn))
        conn.send(("ok", sent, errors, cpu))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}", 0, 0.0))
    finally:
        conn.close()


def split(tenant_of: Sequence[int], publishers: int) -> list[list[int]]:
    """Which publisher sends which body: by tenant (tenant index modulo publishers), so each
    tenant's events leave one process in their order and per-tenant order stays judgeable."""
    out: list[list[int]] = [[] for _ in range(publishers)]
    for i, tenant in enumerate(tenant_of):
        out[tenant % publishers].append(i)
    return [part for part in out if part]


async def publish_in_child(amqp_url: str, queue: str, bodies: Sequence[bytes], rate: float,
                           timeout: float, tenant_of: Sequence[int] | None = None,
                           publishers: int = 1) -> tuple[list[float], int, float]:
    """Publish ``bodies`` at ``rate`` a second (body i at i / rate) from ``publishers`` child
    processes, split by tenant; (send stamps in body order, errors, the publishers' CPU seconds).

    Bounded: the children get ``timeout`` seconds past their start-up, then they are killed."""
    parts = split(tenant_of if tenant_of is not None else [0] * len(bodies), max(1, publishers))
    ctx = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    try:
        for n, part in enumerate(parts):
            mine, theirs = ctx.Pipe(duplex=True)
            process = ctx.Process(target=_child, args=(amqp_url, queue, [bodies[i] for i in part],
                                                       [i / rate for i in part], theirs),
                                  daemon=True, name=f"rtc-bench-publisher-{n + 1}")
            process.start()
            theirs.close()
            pipes.append(mine)
            processes.append(process)
        for mine in pipes:
            if not await asyncio.to_thread(mine.poll, START_TIMEOUT_S):
                raise TimeoutError(f"a publisher process did not connect within {START_TIMEOUT_S:.0f} s")
            status, payload, _, _ = mine.recv()
            if status != "ready":
                raise RuntimeError(f"a publisher process failed: {payload}")
        go = time.perf_counter() + 0.05
        for mine in pipes:
            mine.send(("go", go))
        results = []
        for mine in pipes:
            if not await asyncio.to_thread(mine.poll, timeout):
                raise TimeoutError(f"a publisher process did not finish within {timeout:.0f} s")
            results.append(mine.recv())
    finally:
        for mine in pipes:
            mine.close()
        for process in processes:
            await asyncio.to_thread(process.join, 5)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
    sent = [float("nan")] * len(bodies)
    errors, cpu = 0, 0.0
    for part, (status, payload, errs, cpu_s) in zip(parts, results):
        if status != "ok":
            raise RuntimeError(f"a publisher process failed: {payload}")
        for i, at in zip(part, payload):
            sent[i] = at
        errors += errs
        cpu += cpu_s
    return sent, errors, cpu


def publisher_figures(cpu_s: float, published: int, processes: int) -> dict[str, object]:
    """The publishers' CPU while publishing (from the go, start-up and connect left out) and per event."""
    return {"processes": processes, "cpu_s": round(cpu_s, 3),
            "cpu_us_per_publish": round(cpu_s / published * 1e6, 1) if published else None}
