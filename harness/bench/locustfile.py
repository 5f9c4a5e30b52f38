"""The Locust worker's side of a distributed bench: relay between the master and a clean child.

Run by Locust itself (``locust -f <this file> --worker --master-host H --master-port P``, or
``realtime-conformance bench-worker``), so it imports only the standard library and Locust. The
worker's process is gevent-patched; our asyncio clients are not run here but in a child started
from this file (``python -m realtime_conformance.harness.bench.agent``) that talks JSON lines over a
pipe. The relay: ``rtc`` messages from the master go to the child's stdin as they are, the child's
stdout lines go back to the master as ``rtc``. ``rtc_ping`` is answered here at once with this
machine's ``time.perf_counter()`` (the child's clock too: same machine), for the master's
offset and round-trip measurement. ``BenchRelay`` exists because Locust wants a User class; the
bench never spawns it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import gevent
from locust import User, constant, events, task
from locust.runners import WorkerRunner

AGENT = "realtime_conformance.harness.bench.agent"
WATCH_ENV = "RTC_BENCH_WATCH_PID"  # set by a bench that started this worker: quit when that process is gone


class BenchRelay(User):
    """Never spawned: the bench drives its clients in the child, not as Locust users."""

    wait_time = constant(3600)

    @task
    def idle(self) -> None:  # pragma: no cover - never spawned
        pass


class Relay:
    """One child per worker, started when the worker starts, ended when it quits."""

    def __init__(self, runner: WorkerRunner) -> None:
        self.runner = runner
        self.child = subprocess.Popen([sys.executable, "-m", AGENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        gevent.spawn(self._pump)

    def _pump(self) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            self.runner.send_message("rtc", line.decode().rstrip("\n"))
        self.runner.send_message("rtc", '{"id":null,"error":"the bench agent process ended"}')

    def to_child(self, environment: Any, msg: Any, **_: Any) -> None:
        assert self.child.stdin is not None
        self.child.stdin.write(msg.data.encode() + b"\n")
        self.child.stdin.flush()

    def pong(self, environment: Any, msg: Any, **_: Any) -> None:
        got = time.perf_counter()
        self.runner.send_message("rtc_pong", {"seq": msg.data["seq"], "t1": msg.data["t1"], "t2": got,
                                              "t3": time.perf_counter()})

    def stop(self, **_: Any) -> None:
        if self.child.poll() is None:
            self.child.kill()
            self.child.wait(5)


def _watch(pid: int, runner: WorkerRunner) -> None:
    while True:
        gevent.sleep(1.0)
        try:
            os.kill(pid, 0)
        except OSError:
            runner.quit()
            return


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        return
    relay = Relay(runner)
    runner.register_message("rtc", relay.to_child)
    runner.register_message("rtc_ping", relay.pong)
    environment.events.quitting.add_listener(relay.stop)
    if os.environ.get(WATCH_ENV, "").isdigit():
        gevent.spawn(_watch, int(os.environ[WATCH_ENV]), runner)
