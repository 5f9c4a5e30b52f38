"""The clean child of a Locust worker: our asyncio clients, unpatched, driven over a pipe.

``import locust`` monkey-patches its process with gevent, and under it asyncio's selector is
gevent's (docs/bench.md, the spike). So a Locust worker (``locustfile.py``) starts this module as
``python -m realtime_conformance.harness.bench.agent``: plain asyncio, the bench's own clients, the
same code and per-delivery cost as a one-process bench. It reads one JSON request a line on stdin
and writes JSON replies a line on stdout (nothing else goes to stdout); end of stdin ends it.

Requests (each carries an ``id`` the replies repeat):
- ``connect``: ``clients`` ([name, tenant, token, url] each), ``path``, ``concurrency``, ``client``;
  the reply has the connect figures and every connect time; the meter and lag probe start.
- ``drain``: wait until ``expect`` deliveries were seen (bounded by ``timeout``); with ``meter``
  the reply also has this process's CPU, memory and loop lag over the step.
- ``close``: disconnect every client; replies with ``more`` carry the records in chunks, the last
  one each client's connect and close stamps. Stamps are ``time.perf_counter()`` of this machine.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from types import SimpleNamespace
from typing import Any

import aiohttp

from realtime_conformance.harness.bench.clients import BenchClient, WireClient
from realtime_conformance.harness.bench.load import Counter, LagProbe, connect_all
from realtime_conformance.harness.bench.resources import ProcessMeter, rss_bytes

RECORDS_PER_CHUNK = 20_000


class Agent:
    """One worker's clients for one step at a time."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.clients: list[Any] = []
        self.counter = Counter()
        self.session: aiohttp.ClientSession | None = None
        self.meter: ProcessMeter | None = None
        self.relay: ProcessMeter | None = None
        self.probe: LagProbe | None = None
        self.sampler: asyncio.Task[None] | None = None
        self.per_client_kb: float | None = None

    def reply(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        self.out.flush()

    async def connect(self, req: dict[str, Any]) -> dict[str, Any]:
        self.counter = Counter()
        wire = req.get("client", "wire") == "wire"
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) if wire else None
        specs = req["clients"]
        for name, tenant, token, _url in specs:
            self.clients.append(WireClient(name, tenant, token, self.counter.add, self.session) if wire
                                else BenchClient(name, tenant, token, self.counter.add))
        gc.collect()
        before = rss_bytes(os.getpid())
        where = SimpleNamespace(urls=[s[3] for s in specs], url=specs[0][3] if specs else "", socketio_path=req["path"])
        summary = await connect_all(self.clients, where, int(req.get("concurrency", 100)))  # type: ignore[arg-type]
        gc.collect()
        connected = sum(1 for c in self.clients if c.connected)
        self.per_client_kb = round((rss_bytes(os.getpid()) - before) / connected / 1024, 1) if connected else None
        self.meter = ProcessMeter(os.getpid(), children=False).start()
        self.relay = ProcessMeter(os.getppid(), children=False).start()  # the Locust worker relaying for us
        self.probe = LagProbe().start()
        self.sampler = asyncio.create_task(self._sample())
        return {"connect": summary, "connected": connected,
                "connect_ms": [c.connect_ms for c in self.clients if c.connect_ms is not None]}

    async def _sample(self) -> None:
        while self.meter is not None:
            self.meter.sample()
            if self.relay is not None:
                self.relay.sample()
            await asyncio.sleep(1.0)

    async def drain(self, req: dict[str, Any]) -> dict[str, Any]:
        drained = await self.counter.wait_for(req["expect"], float(req["timeout"]))
        out: dict[str, Any] = {"drained": drained, "deliveries": self.counter.value}
        if req.get("meter") and self.meter is not None and self.probe is not None:
            window = time.perf_counter() - self.meter._t0
            figures = self.meter.stop() or {}
            relay = (self.relay.stop() or {}) if self.relay is not None else {}
            self.meter = self.relay = None
            if self.sampler is not None:
                self.sampler.cancel()
            out["window_s"] = round(window, 3)
            out["figures"] = {**figures, **(await self.probe.stop()), "memory_per_client_kb": self.per_client_kb,
                              "relay_cpu_pct": relay.get("cpu_pct"), "relay_rss_mb": relay.get("rss_mb")}
        return out

    async def close(self, req: dict[str, Any]) -> dict[str, Any]:
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        chunk: list[Any] = []
        size = 0
        for c in self.clients:
            chunk.append([c.name, c.received])
            size += len(c.received) + 1
            if size >= RECORDS_PER_CHUNK:
                self.reply({"id": req["id"], "more": True, "records": chunk})
                chunk, size = [], 0
        if chunk:
            self.reply({"id": req["id"], "more": True, "records": chunk})
        stamps = [[c.name, c.connected_at, c.closed_at] for c in self.clients]
        self.clients = []
        return {"stamps": stamps, "pid": os.getpid()}

    async def handle(self, req: dict[str, Any]) -> None:
        op = req.get("op")
        try:
            handler = {"connect": self.connect, "drain": self.drain, "close": self.close}[op]
            self.reply({"id": req.get("id"), **(await handler(req))})
        except Exception as exc:  # reported to the bench, which stops the run with it
            self.reply({"id": req.get("id"), "error": f"{op}: {type(exc).__name__}: {exc}"})


async def serve() -> None:
    """Read requests until stdin ends (the worker is gone), one at a time."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    agent = Agent(os.fdopen(os.dup(sys.stdout.fileno()), "wb"))
    sys.stdout = sys.stderr  # stdout is the protocol's alone
    agent.reply({"id": None, "ready": True, "pid": os.getpid(), "at": time.perf_counter()})
    while line := await reader.readline():
        await agent.handle(json.loads(line))
    await asyncio.gather(*(c.close() for c in agent.clients), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(serve())
