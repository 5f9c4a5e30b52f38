"""Benchmark: the reference gateway as one instance and as several on one Redis and one read model.

Starts a private RabbitMQ and redis-server and, per layout, fresh gateway processes sharing
one queue and one SQLite file; spreads tenants' tabs over the instances; publishes events at a
steady rate while REST reads hit every instance; records delivery latency (publish -> each
tab) and REST latency, and writes them to reports/bench-cluster.json.

    .venv/bin/python scripts/bench-cluster.py [--events 1000] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import jwt
import socketio

from realtime_conformance.harness.providers.broker import PrivateRabbitNode
from realtime_conformance.harness.providers.ports import free_port
from realtime_conformance.harness.providers.processes import ManagedProcess

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-0123456789abcdef-0123456789abcdef-0123456789"
TENANTS = 5
TABS_PER_TENANT = 2


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2) if ordered else float("nan")


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50_ms": pct(values, 0.50), "p99_ms": pct(values, 0.99),
            "max_ms": round(max(values) * 1000, 2) if values else None,
            "mean_ms": round(statistics.fmean(values) * 1000, 2) if values else None}


def start_redis(workdir: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    proc = ManagedProcess(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no"], name="redis", log_path=workdir / "redis.log", cwd=workdir)
    proc.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("redis-server did not answer within 10 s")


def start_gateway(workdir: Path, env: dict[str, str]) -> tuple[ManagedProcess, str]:
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
    full.update(env, HOST="127.0.0.1", PORT=str(port), LOG_LEVEL="warning", PYTHONUNBUFFERED="1")
    proc = ManagedProcess([sys.executable, "-m", "realtime_conformance.gateway"], name="gateway",
                          log_path=workdir / f"gateway-{port}.log", env=full, cwd=ROOT)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if json.loads(resp.read())["broker"] == "connected":
                    return proc, url
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"gateway on {url} not ready:\n{proc.log_tail()}")


def token(tenant: str) -> str:
    return jwt.encode({"tenantId": tenant, "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")


def rest_get(url: str, path: str, tok: str) -> float:
    req = urllib.request.Request(f"{url}{path}", headers={"Authorization": f"Bearer {tok}"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:  # a 404 before the tenant's first event is an answer too
        exc.read()
    return time.perf_counter() - started


async def run_layout(name: str, instances: int, redis_url: str, amqp_url: str, events: int, rate: float,
                     workdir: Path) -> dict[str, Any]:
    queue = f"bench.{uuid.uuid4().hex[:8]}"
    env = {"RABBITMQ_URL": amqp_url, "JWT_SECRET": SECRET, "AGENT_PORTAL_EVENTS_QUEUE": queue,
           "DATABASE_PATH": str(workdir / f"{queue}.sqlite3"), "REDIS_URL": redis_url}
    gateways = [start_gateway(workdir, env) for _ in range(instances)]
    urls = [url for _, url in gateways]
    tenants = [f"bench-{i}" for i in range(TENANTS)]
    latencies: list[float] = []
    received = 0
    tabs: list[socketio.AsyncClient] = []
    try:
        for t_index, tenant in enumerate(tenants):
            for tab in range(TABS_PER_TENANT):
                client = socketio.AsyncClient(reconnection=False, handle_sigint=False)

                @client.on("new_message")
                async def on_message(data: Any) -> None:
                    nonlocal received
                    latencies.append(time.time() - float(data["message"]))
                    received += 1

                await client.connect(urls[(t_index + tab) % instances], auth={"token": token(tenant)},
                                     transports=["websocket"], wait_timeout=5)
                tabs.append(client)
        rest_times: dict[str, list[float]] = {url: [] for url in urls}
        stop_rest = False

        def rest_loop() -> None:
            i = 0
            while not stop_rest:
                url = urls[i % instances]
                tenant = tenants[i % TENANTS]
                path = "/api/conversations" if i % 2 else "/api/conversations/c1/messages"
                rest_times[url].append(rest_get(url, path, token(tenant)))
                i += 1

        rest_task = asyncio.get_running_loop().run_in_executor(None, rest_loop)
        conn = await aio_pika.connect(amqp_url, timeout=5)
        channel = await conn.channel(publisher_confirms=False)
        interval = 1.0 / rate
        started = time.monotonic()
        for i in range(events):
            tenant = tenants[i % TENANTS]
            body = {"type": "new_message", "tenantId": tenant, "timestamp": "2026-11-28T10:00:00.000Z", "data": {
                "conversationId": "c1", "messageId": f"m{i}", "from": "+1555", "from_name": "B",
                "message": repr(time.time()), "media_url": None, "timestamp": "2026-11-28T10:00:00.000Z",
                "isNewConversation": False}}
            await channel.default_exchange.publish(aio_pika.Message(json.dumps(body).encode()), routing_key=queue)
            delay = started + (i + 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        expected = events * TABS_PER_TENANT
        deadline = time.monotonic() + 30
        while received < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop_rest = True
        await rest_task
        await conn.close()
        all_rest = [t for times in rest_times.values() for t in times]
        return {"layout": name, "instances": instances, "redis": bool(redis_url), "events": events, "rate_per_s": rate,
                "tabs": len(tabs), "deliveries_expected": expected, "deliveries_received": received,
                "delivery": summary(latencies), "rest": summary(all_rest),
                "rest_per_instance": {f"instance{i + 1}": summary(rest_times[u]) for i, u in enumerate(urls)}}
    finally:
        for client in tabs:
            if client.connected:
                await client.disconnect()
        for proc, _ in gateways:
            proc.terminate(timeout=5)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--repeat", type=int, default=1, help="measure every layout this many times, interleaved")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench-cluster.json"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    broker = PrivateRabbitNode()
    broker.start()
    redis_proc, redis_url = start_redis(workdir)
    results = []
    layouts = (("1 instance, no Redis", 1, ""), ("1 instance + Redis adapter", 1, redis_url),
               ("2 instances + Redis adapter", 2, redis_url))
    try:
        # Warm-up, not recorded: the first layout measured otherwise pays for a cold broker and caches.
        await run_layout("warm-up", 1, "", broker.amqp_url, 100, args.rate, workdir)
        for name, instances, redis in [layout for _ in range(args.repeat) for layout in layouts]:
            result = await run_layout(name, instances, redis, broker.amqp_url, args.events, args.rate, workdir)
            results.append(result)
            print(f"{name:30} delivery p50 {result['delivery']['p50_ms']:7} ms  p99 {result['delivery']['p99_ms']:7} ms"
                  f"  | REST p50 {result['rest']['p50_ms']:6} ms  p99 {result['rest']['p99_ms']:6} ms"
                  f"  ({result['rest']['n']} reads)  received {result['deliveries_received']}/"
                  f"{result['deliveries_expected']}", flush=True)
    finally:
        redis_proc.terminate(timeout=5)
        broker.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine_cpus": os.cpu_count(), "load_average": os.getloadavg(),
                                          "results": results}, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
