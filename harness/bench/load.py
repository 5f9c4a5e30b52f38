"""One bench step against one gateway: connect the clients, publish at the rate, drain, judge.

Everything is timed in this process on one clock (``time.perf_counter``): the publish stamp is
taken just before the message is written to the broker, the receive stamp when python-socketio
hands the event over. The same loop also runs a lag probe, because a harness too busy to read
its sockets would add its own delay to every latency: ``harness.loop_lag_p99_ms`` says how much.
Correctness comes from the conformance checker (``judging.checks.check``) over the whole history.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import time
from typing import Any, Protocol, Sequence

from realtime_conformance.harness import samples
from realtime_conformance.harness.bench import stats
from realtime_conformance.harness.bench.options import BenchConfig
from realtime_conformance.harness.bench.profiles import Step
from realtime_conformance.harness.bench.resources import ProcessMeter, rss_bytes
from realtime_conformance.harness.judging.checks import ClientView, Publish, check
from realtime_conformance.harness.wire.clients import Received, TenantClient
from realtime_conformance.harness.wire.publisher import Publisher, envelope_for
from realtime_conformance.harness.wire.scenario import stamp, unique_tenant
from realtime_conformance.harness.wire.tokens import TokenFactory



CONNECT_TIMEOUT_S = 15.0
LAG_PROBE_S = 0.01


class LoadTarget(Protocol):
    """What a step needs of a gateway: where to connect and publish, how to sign, whom to meter."""

    name: str
    url: str
    amqp_url: str
    queue: str
    socketio_path: str
    tokens: TokenFactory
    pid: int | None


def mix_cycle(mix: Sequence[tuple[str, int]]) -> list[str]:
    """The payload mix as a repeating sequence of types, interleaved (6:2:1 is not six in a row)."""
    total = sum(w for _, w in mix)
    out: list[str] = []
    credit = {kind: 0.0 for kind, _ in mix}
    for _ in range(total):  # smooth weighted round-robin
        for kind, w in mix:
            credit[kind] += w
        kind = max(credit, key=lambda k: credit[k])
        credit[kind] -= total
        out.append(kind)
    return out


class Counter:
    """Deliveries seen so far, and an event that fires when a target count is reached."""

    def __init__(self) -> None:
        self.value = 0
        self.target = math.inf
        self.reached = asyncio.Event()

    def add(self, _client: TenantClient, _item: Received) -> None:
        self.value += 1
        if self.value >= self.target:
            self.reached.set()

    async def wait_for(self, target: float, timeout: float) -> bool:
        """Until ``target`` deliveries were seen, bounded by ``timeout``; True if reached."""
        self.target = target
        self.reached.clear()
        if self.value >= target:
            return True
        try:
            await asyncio.wait_for(self.reached.wait(), timeout=max(timeout, 0.01))
        except asyncio.TimeoutError:
            return False
        return True


class LagProbe:
    """How late this loop wakes up from a short sleep: the harness's own delay on every receive."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_S)
            self.lags_ms.append(max(0.0, (time.perf_counter() - before - LAG_PROBE_S) * 1000))

    def start(self) -> "LagProbe":
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        summary = stats.latency(self.lags_ms)
        return {"loop_lag_p99_ms": summary["p99_ms"], "loop_lag_max_ms": summary["max_ms"]}


async def connect_all(clients: Sequence[TenantClient], concurrency: int) -> dict[str, Any]:
    """Connect every client, ``concurrency`` at a time; connect times, failures and the rate."""
    gate = asyncio.Semaphore(concurrency)

    async def one(c: TenantClient) -> bool:
        async with gate:
            return await c.connect(CONNECT_TIMEOUT_S)

    started = time.perf_counter()
    ok = await asyncio.gather(*(one(c) for c in clients))
    wall = time.perf_counter() - started
    times = [c.connect_latency * 1000 for c in clients if c.connect_latency is not None]
    summary = stats.latency(times)
    failed = [c for c, good in zip(clients, ok) if not good]
    first_error = None
    if failed:
        bad = failed[0]
        first_error = (str(bad.connect_errors[-1].data) if bad.connect_errors
                       else (bad.transport_errors[-1] if bad.transport_errors else "timeout"))
    return {"p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"], "max_ms": summary["max_ms"],
            "wall_s": round(wall, 3), "per_s": round(len(clients) / wall, 1) if wall > 0 else None,
            "failed": len(failed), "first_error": first_error}


async def publish_paced(publisher: Publisher, tenants: Sequence[str], mix: Sequence[tuple[str, int]],
                        rate: float, duration_s: float, publishes: list[Publish]) -> dict[str, Any]:
    """Publish ``rate`` events a second for ``duration_s``, tenants in turn, in seq order.

    Paced against a schedule (the i-th event is due at i / rate): a late loop catches up instead
    of drifting, so the rate asked is the rate offered. One task publishes, so seq order is
    publish order, which is what the checker's order test needs.
    """
    kinds = mix_cycle(mix)
    total = max(1, round(rate * duration_s))
    errors = 0
    started = time.perf_counter()
    for i in range(total):
        wait = started + i / rate - time.perf_counter()
        await asyncio.sleep(wait if wait > 0 else 0)  # pacing is the load itself, not a synchronisation
        tenant, kind = tenants[i % len(tenants)], kinds[i % len(kinds)]
        data, marker = stamp(kind, samples.sample(kind, i))
        envelope = envelope_for(kind, tenant, data)
        p = Publish(i + 1, tenant, kind, data, envelope, time.perf_counter(), marker=marker)
        publishes.append(p)
        try:
            p.sent_at = await publisher.publish_body(json.dumps(envelope).encode())
        except Exception:  # a failed publish is counted; the event it carried is not expected
            publishes.pop()
            errors += 1
    wall = time.perf_counter() - started
    return {"published": len(publishes), "publish_errors": errors, "publish_wall_s": round(wall, 3),
            "published_per_s": round(len(publishes) / wall, 1) if wall > 0 else None}


def _view(c: TenantClient) -> ClientView:
    return ClientView(c.name, c.tenant, c.connected_at[0] if c.connected_at else None, c.closed_at,
                      [(r.event, r.data, r.at) for r in c.received], True, c.group)  # type: ignore[attr-defined]


async def run_step(target: LoadTarget, step: Step, config: BenchConfig, index: int) -> dict[str, Any]:
    """One step against one target: the bench.json entry for it."""
    me = os.getpid()
    counter = Counter()
    tenants = [unique_tenant("bench") for _ in range(step.tenants)]
    clients: list[TenantClient] = []
    for tenant in tenants:
        token = target.tokens.valid(tenant)  # tabs of one agent share a token, as in a browser
        for tab in range(step.tabs):
            c = TenantClient(name=f"{tenant}/tab{tab + 1}", tenant=tenant, url=target.url, token=token,
                             socketio_path=target.socketio_path, on_event=counter.add)
            c.group = token  # type: ignore[attr-defined]
            clients.append(c)
    gc.collect()
    rss_before = rss_bytes(me)
    publishes: list[Publish] = []
    entry: dict[str, Any] = {"target": target.name, "step": index, "label": step.label, "clients": step.clients,
                             "tenants": step.tenants, "tabs": step.tabs, "events_per_s": step.events_per_s,
                             "offered_deliveries_per_s": step.deliveries_per_s, "step_s": config.step_s,
                             "mix": dict(config.mix), "load_avg_1m": round(os.getloadavg()[0], 2)}
    publisher = Publisher(target.amqp_url, target.queue, confirms=False)
    try:
        entry["connect"] = await connect_all(clients, config.connect_concurrency)
        gc.collect()
        connected = [c for c in clients if c.connected]
        per_client = (rss_bytes(me) - rss_before) / len(connected) if connected else None
        await publisher.connect()
        harness, gateway, probe = ProcessMeter(me).start(), ProcessMeter(target.pid).start(), LagProbe().start()
        sampler = asyncio.create_task(_sample_every_second(harness, gateway))
        started = time.perf_counter()
        entry.update(await publish_paced(publisher, tenants, config.mix, step.events_per_s, config.step_s, publishes))
        expected = len(publishes) * step.tabs
        drained = await counter.wait_for(expected, config.drain_s)
        window = time.perf_counter() - started
        sampler.cancel()
        entry["harness"] = {**(harness.stop() or {}), **(await probe.stop())}
        entry["gateway"] = gateway.stop()
        entry["drained"] = drained
        entry["window_s"] = round(window, 3)
        # One barrier per tenant: a late duplicate or leak has its chance to show before the check.
        kind = config.mix[0][0]
        for n, tenant in enumerate(tenants):
            data, marker = stamp(kind, samples.sample(kind, n))
            envelope = envelope_for(kind, tenant, data)
            p = Publish(len(publishes) + 1, tenant, kind, data, envelope, time.perf_counter(), True, marker)
            publishes.append(p)
            p.sent_at = await publisher.publish_body(json.dumps(envelope).encode())
        await counter.wait_for(expected + step.clients, config.drain_s if drained else 2.0)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        await publisher.close()
    result = check(publishes, [_view(c) for c in clients if c.connected_at], budget_ms=math.inf)
    by_type = stats.latency_by_type(result)
    timed = [p for p in publishes if not p.barrier]
    last_receive = max((r.at for c in clients for r in c.received), default=None)
    first_sent = timed[0].sent_at if timed else None
    span = (last_receive - first_sent) if last_receive and first_sent else None
    entry.update({
        "deliveries": result.own_deliveries,
        "deliveries_per_s": round(result.own_deliveries / span, 1) if span else None,
        "p50_ms": by_type["all"]["p50_ms"], "p95_ms": by_type["all"]["p95_ms"],
        "p99_ms": by_type["all"]["p99_ms"], "max_ms": by_type["all"]["max_ms"],
        "latency_by_type": by_type,
        **stats.correctness(result),
    })
    entry["harness"] = {**entry.get("harness", {}),
                        "memory_per_client_kb": round(per_client / 1024, 1) if per_client is not None else None,
                        "cpu_us_per_delivery": _cpu_per_delivery(entry, result.own_deliveries)}
    entry["meets_budget"] = stats.meets_budget(entry, config.budget_ms)
    return entry


def _cpu_per_delivery(entry: dict[str, Any], deliveries: int) -> float | None:
    """The harness's CPU (receiving and publishing) per delivery, in microseconds."""
    pct, window = entry.get("harness", {}).get("cpu_pct"), entry.get("window_s")
    if pct is None or not window or not deliveries:
        return None
    return round(pct / 100 * window / deliveries * 1e6, 1)


async def _sample_every_second(*meters: ProcessMeter) -> None:
    while True:
        for m in meters:
            m.sample()
        await asyncio.sleep(1.0)
