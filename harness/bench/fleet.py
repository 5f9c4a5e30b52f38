"""The bench's Locust master and workers, seen from the pytest process: start, talk, reap.

The master (``master.py``) and, unless they are to join from elsewhere, the N workers
(``locust -f locustfile.py --worker``) are subprocesses of this one, each in a session of its own
so that it and its descendants (a worker's clean child) end together. Every one is reaped when
the fleet closes, also on a failure or Ctrl-C (``close`` kills what has not quit by then).
Requests go to each worker's child as JSON lines through the master; ``request`` collects every
worker's replies (a chunked reply ends with the one without ``more``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
MASTER = Path(__file__).with_name("master.py")
START_TIMEOUT_S = 60.0
JOIN_TIMEOUT_S = 120.0  # workers started by hand on other machines get this long to join
QUIT_TIMEOUT_S = 10.0


class FleetError(RuntimeError):
    """The master or a worker failed; the message says which and what it said."""


def worker_command(master_host: str, master_port: int, extra: tuple[str, ...] = ()) -> list[str]:
    """The command that starts one worker and joins it to a master (Locust's own options)."""
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host", master_host,
            "--master-port", str(master_port), "--loglevel", "WARNING", *extra]  # = `realtime-conformance bench-worker ...`


class Fleet:
    """A started master and its workers; ``async with Fleet(...)`` starts and reaps them."""

    def __init__(self, workers: int, bind_host: str = "127.0.0.1", bind_port: int = 0, start_workers: bool = True,
                 say: Any = print) -> None:
        self.wanted, self.bind_host, self.bind_port = workers, bind_host, bind_port
        self.start_workers = start_workers
        self.say = say
        self.master: asyncio.subprocess.Process | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.port: int | None = None
        self.joined: list[dict[str, Any]] = []
        self.logdir = Path(tempfile.mkdtemp(prefix="rtc-bench-fleet-"))
        self._ids = itertools.count(1)
        self._replies: dict[Any, asyncio.Queue[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._lost: str | None = None

    async def __aenter__(self) -> "Fleet":
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _start(self) -> None:
        log = open(self.logdir / "master.log", "wb")
        timeout = START_TIMEOUT_S if self.start_workers else JOIN_TIMEOUT_S
        self.master = await asyncio.create_subprocess_exec(
            sys.executable, str(MASTER), "--bind-host", self.bind_host,
            "--bind-port", str(self.bind_port), "--workers", str(self.wanted), "--join-timeout", str(timeout),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log, start_new_session=True,
            limit=2**30)
        log.close()
        self._reader = asyncio.create_task(self._read())
        listening = await self._event(START_TIMEOUT_S, "the Locust master did not start")
        self.port = int(listening["port"])
        if self.start_workers:
            env = {**os.environ, "RTC_BENCH_WATCH_PID": str(os.getpid())}
            for n in range(self.wanted):
                with open(self.logdir / f"worker-{n}.log", "wb") as wlog:
                    self.workers.append(subprocess.Popen(worker_command("127.0.0.1", self.port), env=env,
                                                         stdout=wlog, stderr=subprocess.STDOUT,
                                                         stdin=subprocess.DEVNULL, start_new_session=True))
        else:
            self.say(f"bench master listening on {self.bind_host}:{self.port}; waiting up to {timeout:.0f} s for "
                     f"{self.wanted} workers: realtime-conformance bench-worker --master-host <this host> "
                     f"--master-port {self.port}")
        joined = await self._event(timeout + 10, "the workers did not join the master")
        self.joined = joined["workers"]
        await self._children_ready()

    async def _children_ready(self) -> None:
        """Every worker's clean child said it is ready (its first line)."""
        queue = self._replies.setdefault(None, asyncio.Queue())
        seen: dict[int, dict[str, Any]] = {}
        while len(seen) < self.wanted:
            reply = await self._get(queue, START_TIMEOUT_S, "a worker's bench agent did not start")
            if reply.get("error"):
                raise FleetError(f"worker {reply['worker']}: {reply['error']}{self._logs()}")
            seen[reply["worker"]] = reply
        for w in self.joined:
            w["agent_pid"] = seen[w["index"]].get("pid")

    async def _read(self) -> None:
        assert self.master is not None and self.master.stdout is not None
        async for line in self.master.stdout:
            message = json.loads(line)
            if "event" in message:
                await self._events.put(message)
            elif "clock" in message:
                self._replies.setdefault(message.get("id"), asyncio.Queue()).put_nowait(message)
            else:
                reply = {**message["reply"], "worker": message["worker"]}
                if reply.get("id") is None and reply.get("error"):  # a child died: every waiting request fails now
                    for queue in list(self._replies.values()):
                        queue.put_nowait(reply)
                self._replies.setdefault(reply.get("id"), asyncio.Queue()).put_nowait(reply)
        self._lost = f"the Locust master ended (exit {await self.master.wait()})"
        for queue in self._replies.values():
            queue.put_nowait({"error": self._lost, "worker": -1})
        await self._events.put({"event": "error", "error": self._lost})

    def _logs(self) -> str:
        tails = []
        for path in sorted(self.logdir.glob("*.log")):
            text = path.read_text(errors="replace").strip()
            if text:
                tails.append(f"\n--- {path.name} ---\n{text[-1500:]}")
        return "".join(tails)

    async def _get(self, queue: asyncio.Queue[dict[str, Any]], timeout: float, what: str) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(queue.get(), timeout)
        except asyncio.TimeoutError:
            raise FleetError(f"{what} within {timeout:.0f} s{self._logs()}") from None

    async def _event(self, timeout: float, what: str) -> dict[str, Any]:
        event = await self._get(self._events, timeout, what)
        if event["event"] == "error":
            raise FleetError(f"{what}: {event['error']}{self._logs()}")
        return event

    def _send(self, message: Mapping[str, Any]) -> None:
        assert self.master is not None and self.master.stdin is not None
        if self._lost:
            raise FleetError(self._lost + self._logs())
        self.master.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def request(self, per_worker: Mapping[int, Mapping[str, Any]], timeout: float) -> dict[int, list[dict[str, Any]]]:
        """Send each worker's child its request; every reply of each (chunks first, the final last)."""
        rid = next(self._ids)
        queue = self._replies.setdefault(rid, asyncio.Queue())
        for worker, req in per_worker.items():
            self._send({"op": "send", "worker": worker, "line": json.dumps({**req, "id": rid}, separators=(",", ":"))})
        assert self.master is not None and self.master.stdin is not None
        await self.master.stdin.drain()
        out: dict[int, list[dict[str, Any]]] = {w: [] for w in per_worker}
        pending = set(per_worker)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while pending:
                reply = await self._get(queue, max(0.1, deadline - loop.time()),
                                        f"workers {sorted(pending)} did not answer {next(iter(per_worker.values()))['op']}")
                if reply.get("error"):
                    raise FleetError(f"worker {reply['worker']}: {reply['error']}{self._logs()}")
                out[reply["worker"]].append(reply)
                if not reply.get("more"):
                    pending.discard(reply["worker"])
        finally:
            self._replies.pop(rid, None)
        return out

    async def clock(self, exchanges: int = 8) -> dict[int, dict[str, float] | None]:
        """Each worker's clock offset (its perf_counter minus this host's) and round trip, in ms."""
        rid = f"clock-{next(self._ids)}"
        queue = self._replies.setdefault(rid, asyncio.Queue())
        self._send({"op": "clock", "exchanges": exchanges, "id": rid})
        try:
            answer = await self._get(queue, 10 + exchanges * 5 * self.wanted, "the clock measurement did not finish")
        finally:
            self._replies.pop(rid, None)
        if answer.get("error"):
            raise FleetError(answer["error"] + self._logs())
        return {int(k): v for k, v in answer["clock"].items()}

    async def close(self) -> None:
        """Quit the master (it tells the workers), then end whatever has not: every process reaped."""
        if self.master is not None and self.master.returncode is None:
            with contextlib.suppress(Exception):
                self._send({"op": "quit"})
                self.master.stdin.close()  # type: ignore[union-attr]
            try:
                await asyncio.wait_for(self.master.wait(), QUIT_TIMEOUT_S)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        deadline = asyncio.get_running_loop().time() + QUIT_TIMEOUT_S
        for worker in self.workers:
            while worker.poll() is None and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
        self.reap()
        if self.master is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.master.wait(), 5)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        shutil.rmtree(self.logdir, ignore_errors=True)  # a failure's FleetError already quoted the logs

    def reap(self) -> None:
        """Kill (by process group: each started in a session of its own) and wait for every process
        started here that is still there; safe to call twice and outside the event loop."""
        procs: list[Any] = [p for p in [self.master, *self.workers] if p is not None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
