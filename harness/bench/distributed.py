"""One bench step with its clients spread over Locust workers (``--bench-workers N``).

The same step as ``load.run_step``, other hands: this process signs every token (workers never
see the JWT secret), plans the events, publishes them (``publishing``, on this host), meters the
gateway and broker, and judges the whole history with the conformance checker; the workers'
clean children (``agent``) connect the clients and send back every delivery record (client,
event, payload, receive stamp), nothing sampled. With a measured clock (``clock``) each worker's
stamps are corrected by its offset, and a step whose drift or round trip is not under 10 % of its
p50 has untrusted latencies: shown, but never counted towards ``best`` or the budget.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from typing import Any, Sequence

from realtime_conformance.harness.bench import clock as _clock
from realtime_conformance.harness.bench import stats
from realtime_conformance.harness.bench.fleet import Fleet
from realtime_conformance.harness.bench.load import LoadTarget, _sample_every_second, judge, plan, tenant_of
from realtime_conformance.harness.bench.options import BenchConfig
from realtime_conformance.harness.bench.profiles import Step
from realtime_conformance.harness.bench.publishing import publish_in_child, publisher_figures
from realtime_conformance.harness.bench.resources import GroupMeter, ProcessMeter
from realtime_conformance.harness.judging.checks import ClientView
from realtime_conformance.harness.wire.publisher import Publisher
from realtime_conformance.harness.wire.scenario import unique_tenant

CONNECT_BOUND_S = 120.0


def _merge_connect(replies: dict[int, dict[str, Any]], clients: int) -> dict[str, Any]:
    """The workers' connect figures as one step's (times over every client, the slowest wall)."""
    summary = stats.latency(t for r in replies.values() for t in r["connect_ms"])
    wall = max((r["connect"]["wall_s"] for r in replies.values()), default=0)
    failed = sum(r["connect"]["failed"] for r in replies.values())
    first = next((r["connect"]["first_error"] for r in replies.values() if r["connect"]["first_error"]), None)
    return {"p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"], "max_ms": summary["max_ms"], "wall_s": wall,
            "per_s": round(clients / wall, 1) if wall > 0 else None, "failed": failed, "first_error": first}


async def run_step(fleet: Fleet, target: LoadTarget, step: Step, config: BenchConfig, index: int) -> dict[str, Any]:
    """One step against one target over the fleet's workers: the bench.json entry for it."""
    n = fleet.wanted
    tenants = [unique_tenant("bench") for _ in range(step.tenants)]
    urls = list(target.urls) or [target.url]
    specs: dict[int, list[list[str]]] = {w: [] for w in range(n)}
    tenant_of_client: dict[str, str] = {}
    token_of: dict[str, str] = {}
    k = 0
    for tenant in tenants:
        token = target.tokens.valid(tenant)  # signed here: the workers get tokens, never the secret
        for tab in range(step.tabs):
            name = f"{tenant}/tab{tab + 1}"
            specs[k % n].append([name, tenant, token, urls[k % len(urls)]])
            tenant_of_client[name], token_of[name] = tenant, token
            k += 1
    publishes = plan(tenants, config.mix, max(1, round(step.events_per_s * config.step_s)))
    bodies = [json.dumps(p.envelope).encode() for p in publishes]
    entry: dict[str, Any] = {"target": target.name, "step": index, "label": step.label, "clients": step.clients,
                             "tenants": step.tenants, "tabs": step.tabs, "events_per_s": step.events_per_s,
                             "offered_deliveries_per_s": step.deliveries_per_s, "step_s": config.step_s,
                             "instances": len(urls), "mix": dict(config.mix),
                             "load_avg_1m": round(os.getloadavg()[0], 2), "client": config.client,
                             "publishers": config.publishers}
    measured = config.clock == "measured"
    concurrency = max(1, math.ceil(config.connect_concurrency / n))
    connected = await fleet.request({w: {"op": "connect", "clients": specs[w], "path": target.socketio_path,
                                         "concurrency": concurrency, "client": config.client} for w in range(n)},
                                    CONNECT_BOUND_S + step.clients / 10)
    finals = {w: r[-1] for w, r in connected.items()}
    entry["connect"] = _merge_connect(finals, step.clients)
    before = await fleet.clock() if measured else {}
    gateway = GroupMeter([ProcessMeter(pid) for pid in (target.pids or (target.pid,))]).start()
    broker = ProcessMeter(target.broker_pid).start()
    pytest_side = ProcessMeter(os.getpid(), children=False).start()
    sampler = asyncio.create_task(_sample_every_second(gateway, broker, pytest_side))
    started = time.perf_counter()
    try:
        sent, errors, publisher_cpu = await publish_in_child(target.amqp_url, target.queue, bodies, step.events_per_s,
                                              config.step_s * 3 + 30, tenant_of(publishes, tenants),
                                              config.publishers)
    finally:
        sampler.cancel()
    for p, at in zip(publishes, sent):
        p.sent_at = at
    publishes = [p for p in publishes if not math.isnan(p.sent_at)]
    wall = (max(p.sent_at for p in publishes) - min(p.sent_at for p in publishes)) if publishes else 0
    entry.update({"published": len(publishes), "publish_errors": errors, "publish_wall_s": round(wall, 3),
                  "published_per_s": round((len(publishes) - 1) / wall, 1) if wall > 0 else None,
                  "publisher": publisher_figures(publisher_cpu, len(publishes), config.publishers)})
    per_tenant = {t: 0 for t in tenants}
    for p in publishes:
        per_tenant[p.tenant] += 1
    expect = {w: sum(per_tenant[s[1]] for s in specs[w]) for w in range(n)}
    drained_replies = await fleet.request({w: {"op": "drain", "expect": expect[w], "timeout": config.drain_s,
                                               "meter": True} for w in range(n)}, config.drain_s + 60)
    window = time.perf_counter() - started
    drains = {w: r[-1] for w, r in drained_replies.items()}
    drained = all(d["drained"] for d in drains.values())
    entry["gateway"], entry["broker"] = gateway.stop(), broker.stop()
    side = pytest_side.stop() or {}
    entry["drained"], entry["window_s"] = drained, round(window, 3)
    barriers = plan(tenants, config.mix[:1], len(tenants), first_seq=len(bodies) + 1, barrier=True)
    async with Publisher(target.amqp_url, target.queue, confirms=False) as publisher:
        for p in barriers:
            p.sent_at = await publisher.publish_body(json.dumps(p.envelope).encode())
    publishes += barriers
    await fleet.request({w: {"op": "drain", "expect": expect[w] + len(specs[w]),
                             "timeout": config.drain_s if drained else 2.0} for w in range(n)}, config.drain_s + 60)
    collecting = time.perf_counter()
    closed = await fleet.request({w: {"op": "close"} for w in range(n)}, 120 + step.clients / 100)
    collected = time.perf_counter()
    after = await fleet.clock() if measured else {}
    clocks = {w: _clock.worker_clock(before.get(w), after.get(w)) for w in range(n)} if measured else {}
    views, received_by_worker = _views(closed, tenant_of_client, token_of, clocks)
    last_receive = max((r[2] for v in views for r in v.received), default=None)
    judging = time.perf_counter()
    judge(entry, publishes, views, last_receive, config)
    entry["records"] = {"count": sum(received_by_worker.values()), "collect_s": round(collected - collecting, 3),
                        "judge_s": round(time.perf_counter() - judging, 3)}  # what exactness costs, and where
    entry["workers"] = [_worker_figures(w, fleet, specs[w], finals[w], drains[w], received_by_worker.get(w, 0),
                                        clocks.get(w)) for w in range(n)]
    entry["harness"] = _harness(entry, side)
    if measured:
        ok, why = _clock.trusted(clocks, entry["p50_ms"])
        entry["latency_trusted"], entry["clock"] = ok, {"mode": "measured", "why": why}
    else:
        entry["latency_trusted"], entry["clock"] = True, {"mode": "shared", "why": "one machine, one monotonic clock"}
    entry["meets_budget"] = stats.meets_budget(entry, config.budget_ms)
    return entry


def _views(closed: dict[int, list[dict[str, Any]]], tenant_of_client: dict[str, str], token_of: dict[str, str],
           clocks: dict[int, dict[str, Any]]) -> tuple[list[ClientView], dict[int, int]]:
    """Every client's history from its worker's records, stamps corrected by that worker's offset."""
    views: list[ClientView] = []
    counts: dict[int, int] = {}
    for w, replies in closed.items():
        correction = ((clocks.get(w) or {}).get("correction_ms") or 0.0) / 1000
        received: dict[str, list[tuple[str, Any, float]]] = {}
        for reply in replies[:-1]:
            for name, records in reply["records"]:
                received[name] = [(e, d, at + correction) for e, d, at in records]
        counts[w] = sum(len(r) for r in received.values())
        for name, connected_at, closed_at in replies[-1]["stamps"]:
            if connected_at is None:
                continue
            views.append(ClientView(name, tenant_of_client[name], connected_at + correction,
                                    None if closed_at is None else closed_at + correction,
                                    received.get(name, []), True, token_of[name]))
    return views, counts


def _worker_figures(w: int, fleet: Fleet, specs: Sequence[Any], connected: dict[str, Any], drain: dict[str, Any],
                    deliveries: int, clock: dict[str, Any] | None) -> dict[str, Any]:
    figures = drain.get("figures") or {}
    joined = fleet.joined[w] if w < len(fleet.joined) else {}
    return {"worker": w, "id": joined.get("id"), "clients": len(specs), "connected": connected["connected"],
            "connect_failed": connected["connect"]["failed"], "deliveries": deliveries,
            "cpu_pct": figures.get("cpu_pct"), "rss_mb": figures.get("rss_mb"), "rss_mb_max": figures.get("rss_mb_max"),
            "memory_per_client_kb": figures.get("memory_per_client_kb"),
            "loop_lag_p99_ms": figures.get("loop_lag_p99_ms"), "loop_lag_max_ms": figures.get("loop_lag_max_ms"),
            "cpu_us_per_delivery": _per_delivery(figures.get("cpu_pct"), drain.get("window_s"), deliveries),
            "cpu_s": None if figures.get("cpu_pct") is None or not drain.get("window_s")
            else round(figures["cpu_pct"] / 100 * drain["window_s"], 3),
            "relay_cpu_pct": figures.get("relay_cpu_pct"), "relay_rss_mb": figures.get("relay_rss_mb"),
            "clock": clock}


def _per_delivery(cpu_pct: float | None, window_s: float | None, deliveries: int) -> float | None:
    return None if cpu_pct is None or not window_s or not deliveries else round(cpu_pct / 100 * window_s / deliveries * 1e6, 1)


def _harness(entry: dict[str, Any], side: dict[str, Any]) -> dict[str, Any]:
    """The clients' processes summed over the workers (their CPU, memory, worst loop lag; CPU per
    delivery from their CPU seconds, each over its own metered window), and this process on its
    own (it only publishes barriers and waits while a step runs)."""
    workers = entry["workers"]

    def total(key: str) -> float | None:
        values = [w[key] for w in workers if w.get(key) is not None]
        return round(sum(values), 1) if values else None

    def worst(key: str) -> float | None:
        values = [w[key] for w in workers if w.get(key) is not None]
        return max(values) if values else None

    cpu = total("cpu_pct")
    cpu_s, deliveries = total("cpu_s"), entry.get("deliveries")
    per_client = [w["memory_per_client_kb"] for w in workers if w.get("memory_per_client_kb") is not None]
    return {"cpu_pct": cpu, "rss_mb": total("rss_mb"), "rss_mb_max": total("rss_mb_max"),
            "memory_per_client_kb": round(sum(per_client) / len(per_client), 1) if per_client else None,
            "loop_lag_p99_ms": worst("loop_lag_p99_ms"), "loop_lag_max_ms": worst("loop_lag_max_ms"),
            "cpu_us_per_delivery": round(cpu_s / deliveries * 1e6, 1) if cpu_s and deliveries else None,
            "coordinator": side}
