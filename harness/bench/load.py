"""One bench step against one gateway: connect the clients, publish at the rate, drain, judge.

Everything is timed on one clock, ``time.perf_counter`` (CLOCK_MONOTONIC, shared by every process
of the machine): the publish stamp is taken by the publisher process (``publishing``) just before
the message is written to the broker, the receive stamp in this process when python-socketio hands
the event over. This loop also runs a lag probe, because a harness too busy to read its sockets
adds its own delay to every latency: ``harness.loop_lag_p99_ms`` says how much.
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

import aiohttp

from realtime_conformance.harness import samples
from realtime_conformance.harness.bench import stats
from realtime_conformance.harness.bench.options import BenchConfig
from realtime_conformance.harness.bench.profiles import Step
from realtime_conformance.harness.bench.resources import GroupMeter, ProcessMeter, rss_bytes
from realtime_conformance.harness.judging.checks import ClientView, Publish, check
from realtime_conformance.harness.bench.clients import BenchClient, WireClient
from realtime_conformance.harness.bench.publishing import publish_in_child, publisher_figures
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
    broker_pid: int | None
    urls: Sequence[str]  # every instance's URL; clients are spread over them in turn
    pids: Sequence[int | None]


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

    def add(self) -> None:
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


async def connect_all(clients: Sequence[Any], target: LoadTarget, concurrency: int) -> dict[str, Any]:
    """Connect every client, ``concurrency`` at a time; connect times, failures and the rate."""
    gate = asyncio.Semaphore(concurrency)

    async def one(c: Any, url: str) -> bool:
        async with gate:
            return await c.connect(url, target.socketio_path, c.group, CONNECT_TIMEOUT_S)

    urls = list(target.urls) or [target.url]
    started = time.perf_counter()
    ok = await asyncio.gather(*(one(c, urls[n % len(urls)]) for n, c in enumerate(clients)))
    wall = time.perf_counter() - started
    summary = stats.latency(t for c in clients if (t := c.connect_ms) is not None)
    failed = [c for c, good in zip(clients, ok) if not good]
    return {"p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"], "max_ms": summary["max_ms"],
            "wall_s": round(wall, 3), "per_s": round(len(clients) / wall, 1) if wall > 0 else None,
            "failed": len(failed), "first_error": failed[0].error if failed else None}


def plan(tenants: Sequence[str], mix: Sequence[tuple[str, int]], count: int, first_seq: int = 1,
         barrier: bool = False) -> list[Publish]:
    """``count`` events, tenants in turn, types by the mix, each marked so it is recognised anywhere."""
    kinds = mix_cycle(mix)
    out = []
    for i in range(count):
        tenant, kind = tenants[i % len(tenants)], kinds[i % len(kinds)]
        data, marker = stamp(kind, samples.sample(kind, first_seq + i))
        out.append(Publish(first_seq + i, tenant, kind, data, envelope_for(kind, tenant, data), math.nan,
                           barrier, marker))
    return out


def _view(c: Any) -> ClientView:
    return ClientView(c.name, c.tenant, c.connected_at, c.closed_at, c.received, True, c.group)


async def run_step(target: LoadTarget, step: Step, config: BenchConfig, index: int) -> dict[str, Any]:
    """One step against one target: the bench.json entry for it."""
    me = os.getpid()
    counter = Counter()
    tenants = [unique_tenant("bench") for _ in range(step.tenants)]
    clients: list[Any] = []
    # One session for every wire client, without aiohttp's default cap of 100 open connections.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) if config.client == "wire" else None
    for tenant in tenants:
        token = target.tokens.valid(tenant)  # tabs of one agent share a token, as in a browser
        for tab in range(step.tabs):
            name = f"{tenant}/tab{tab + 1}"
            clients.append(WireClient(name, tenant, token, counter.add, session) if session is not None
                           else BenchClient(name, tenant, token, counter.add))
    publishes = plan(tenants, config.mix, max(1, round(step.events_per_s * config.step_s)))
    bodies = [json.dumps(p.envelope).encode() for p in publishes]
    gc.collect()
    rss_before = rss_bytes(me)
    entry: dict[str, Any] = {"target": target.name, "step": index, "label": step.label, "clients": step.clients,
                             "tenants": step.tenants, "tabs": step.tabs, "events_per_s": step.events_per_s,
                             "offered_deliveries_per_s": step.deliveries_per_s, "step_s": config.step_s,
                             "instances": len(target.urls) or 1,
                             "mix": dict(config.mix), "load_avg_1m": round(os.getloadavg()[0], 2),
                             "workers": [], "publishers": config.publishers, "latency_trusted": True, "clock": None}
    try:
        entry["client"] = config.client
        entry["connect"] = await connect_all(clients, target, config.connect_concurrency)
        gc.collect()
        connected = [c for c in clients if c.connected]
        per_client = (rss_bytes(me) - rss_before) / len(connected) if connected else None
        harness = ProcessMeter(me, children=False).start()  # the publisher process is not the clients' cost
        gateway = GroupMeter([ProcessMeter(pid) for pid in (target.pids or (target.pid,))]).start()
        probe = LagProbe().start()
        broker = ProcessMeter(target.broker_pid).start()
        sampler = asyncio.create_task(_sample_every_second(harness, gateway, broker))
        started = time.perf_counter()
        sent, errors, publisher_cpu = await publish_in_child(target.amqp_url, target.queue, bodies, step.events_per_s,
                                              config.step_s * 3 + 30, tenant_of(publishes, tenants),
                                              config.publishers)
        for p, at in zip(publishes, sent):
            p.sent_at = at
        publishes = [p for p in publishes if not math.isnan(p.sent_at)]  # a failed publish is not expected
        wall = (max(p.sent_at for p in publishes) - min(p.sent_at for p in publishes)) if publishes else 0
        entry.update({"published": len(publishes), "publish_errors": errors, "publish_wall_s": round(wall, 3),
                      "published_per_s": round((len(publishes) - 1) / wall, 1) if wall > 0 else None,
                      "publisher": publisher_figures(publisher_cpu, len(publishes), config.publishers)})
        drained = await counter.wait_for(len(publishes) * step.tabs, config.drain_s)
        window = time.perf_counter() - started
        sampler.cancel()
        entry["harness"] = {**(harness.stop() or {}), **(await probe.stop())}
        entry["gateway"] = gateway.stop()
        entry["broker"] = broker.stop()
        entry["drained"] = drained
        entry["window_s"] = round(window, 3)
        # One barrier per tenant: a late duplicate or leak has its chance to show before the check.
        barriers = plan(tenants, config.mix[:1], len(tenants), first_seq=len(bodies) + 1, barrier=True)
        async with Publisher(target.amqp_url, target.queue, confirms=False) as publisher:
            for p in barriers:
                p.sent_at = await publisher.publish_body(json.dumps(p.envelope).encode())
        publishes += barriers
        await counter.wait_for(counter.target + step.clients, config.drain_s if drained else 2.0)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        if session is not None:
            await session.close()
    last_receive = max((r[2] for c in clients for r in c.received), default=None)
    judge(entry, publishes, [_view(c) for c in clients if c.connected_at], last_receive, config)
    entry["harness"] = {**entry.get("harness", {}),
                        "memory_per_client_kb": round(per_client / 1024, 1) if per_client is not None else None,
                        "cpu_us_per_delivery": _cpu_per_delivery(entry, entry["deliveries"])}
    entry["meets_budget"] = stats.meets_budget(entry, config.budget_ms)
    return entry


def tenant_of(publishes: Sequence[Publish], tenants: Sequence[str]) -> list[int]:
    """Each publish's tenant as an index (how several publishers split the work)."""
    index = {t: n for n, t in enumerate(tenants)}
    return [index[p.tenant] for p in publishes]


def judge(entry: dict[str, Any], publishes: Sequence[Publish], views: Sequence[ClientView],
          last_receive: float | None, config: BenchConfig) -> None:
    """The history checker over the whole step, and latency and throughput from its findings."""
    result = check(publishes, views, budget_ms=math.inf)
    by_type = stats.latency_by_type(result)
    timed = [p for p in publishes if not p.barrier]
    first_sent = min(p.sent_at for p in timed) if timed else None
    span = (last_receive - first_sent) if last_receive and first_sent else None
    entry.update({
        "deliveries": result.own_deliveries,
        "deliveries_per_s": round(result.own_deliveries / span, 1) if span else None,
        "p50_ms": by_type["all"]["p50_ms"], "p95_ms": by_type["all"]["p95_ms"],
        "p99_ms": by_type["all"]["p99_ms"], "max_ms": by_type["all"]["max_ms"],
        "latency_by_type": by_type,
        **stats.correctness(result),
    })


def _cpu_per_delivery(entry: dict[str, Any], deliveries: int) -> float | None:
    """The harness's CPU (receiving and publishing) per delivery, in microseconds."""
    pct, window = entry.get("harness", {}).get("cpu_pct"), entry.get("window_s")
    if pct is None or not window or not deliveries:
        return None
    return round(pct / 100 * window / deliveries * 1e6, 1)


async def _sample_every_second(*meters: "ProcessMeter | GroupMeter") -> None:
    while True:
        for m in meters:
            m.sample()
        await asyncio.sleep(1.0)
