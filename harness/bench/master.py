"""The Locust master of a distributed bench, a child of the bench's pytest process.

``python <this file> --bind-host H --bind-port P --workers N`` (by path, not ``-m``: the harness
package's ``__init__`` imports ssl, and gevent must patch before anything does):
Locust's own master runner (no web UI, no users spawned), bound where told (port 0: a free one).
The pytest process owns the target, the broker, the tokens and the history checker; this process
only carries its JSON lines to the workers and theirs back, over Locust's message channel:

stdout: ``{"event": "listening", "port": P}``, then ``{"event": "workers", "workers": [...]}`` once
N workers joined (or ``{"event": "error", ...}`` when they did not within the join timeout), then
``{"worker": I, "reply": <the child's line>}`` and ``{"clock": {...}}`` answers.
stdin: ``{"op": "send", "worker": I, "line": "..."}``, ``{"op": "clock", "exchanges": K}``,
``{"op": "quit"}``; end of stdin is quit too.

Clock: the master takes t1 and t4 on this host's ``time.perf_counter()`` (the publishers' clock:
they run on this host), the worker t2 and t3 on its own; offset = ((t2 - t1) + (t3 - t4)) / 2
(the worker's clock minus this one), kept from the exchange with the smallest round trip.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    sys.path.pop(0)  # this folder's modules (stats, report, ...) must not shadow anything Locust imports

import locust  # noqa: E402,F401 - before anything else: it monkey-patches this process with gevent

import argparse
import json
import time
from typing import Any

import gevent
from gevent.event import AsyncResult
from gevent.fileobject import FileObjectPosix
from locust import User, constant, task
from locust.env import Environment


class BenchRelay(User):
    """Never spawned (the workers' locustfile has the same class): Locust wants one User class."""

    wait_time = constant(3600)

    @task
    def idle(self) -> None:  # pragma: no cover - never spawned
        pass


class Master:
    def __init__(self, host: str, port: int, workers: int) -> None:
        self.env = Environment(user_classes=[BenchRelay])
        self.runner = self.env.create_master_runner(master_bind_host=host, master_bind_port=port)
        self.wanted = workers
        self.out = FileObjectPosix(sys.stdout.fileno(), "wb", close=False)
        self.ids: list[str] = []
        self.pongs: dict[int, AsyncResult] = {}
        self.seq = 0
        self.runner.register_message("rtc", self._reply)
        self.runner.register_message("rtc_pong", self._pong)

    def write(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        self.out.write(text.encode() + b"\n")
        self.out.flush()

    def _reply(self, environment: Any, msg: Any, **_: Any) -> None:
        if msg.node_id in self.ids:
            self.write(f'{{"worker":{self.ids.index(msg.node_id)},"reply":{msg.data}}}')

    def _pong(self, environment: Any, msg: Any, **_: Any) -> None:
        waiting = self.pongs.pop(msg.data["seq"], None)
        if waiting is not None:
            waiting.set((msg.data, time.perf_counter()))

    def wait_for_workers(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = list(self.runner.clients.keys())
            if len(ready) >= self.wanted:
                self.ids = ready[: self.wanted]
                self.write({"event": "workers", "workers": [{"index": i, "id": wid} for i, wid in enumerate(self.ids)]})
                return True
            gevent.sleep(0.1)
        self.write({"event": "error", "error": f"{len(self.runner.clients)} of {self.wanted} workers joined the "
                    f"master within {timeout:g} s"})
        return False

    def clock(self, exchanges: int) -> dict[str, Any]:
        out = {}
        for index, wid in enumerate(self.ids):
            best: tuple[float, float] | None = None  # (rtt, offset), seconds
            for _ in range(exchanges):
                self.seq += 1
                waiting = self.pongs[self.seq] = AsyncResult()
                t1 = time.perf_counter()
                self.runner.send_message("rtc_ping", {"seq": self.seq, "t1": t1}, client_id=wid)
                try:
                    data, t4 = waiting.get(timeout=5)
                except gevent.Timeout:
                    self.pongs.pop(self.seq, None)
                    continue
                rtt = (t4 - t1) - (data["t3"] - data["t2"])
                offset = ((data["t2"] - t1) + (data["t3"] - t4)) / 2
                if best is None or rtt < best[0]:
                    best = (rtt, offset)
            out[str(index)] = None if best is None else {"rtt_ms": round(best[0] * 1000, 4),
                                                         "offset_ms": round(best[1] * 1000, 4)}
        return out

    def serve(self) -> None:
        stdin = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
        for line in stdin:
            req = json.loads(line)
            if req["op"] == "send":
                self.runner.send_message("rtc", req["line"], client_id=self.ids[req["worker"]])
            elif req["op"] == "clock":
                self.write({"clock": self.clock(int(req.get("exchanges", 8))), "id": req.get("id")})
            elif req["op"] == "quit":
                break

    def quit(self) -> None:
        self.runner.quit()  # tells every worker to quit as well


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind-host", default="127.0.0.1")
    parser.add_argument("--bind-port", type=int, default=0)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--join-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    master = Master(args.bind_host, args.bind_port, args.workers)
    try:
        master.write({"event": "listening", "port": master.runner.server.port, "host": args.bind_host})
        if master.wait_for_workers(args.join_timeout):
            master.serve()
    finally:
        master.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
