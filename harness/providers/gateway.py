"""The gateway under test: a command the harness runs, or a URL someone else runs.

Every provider has the same surface (``url``, ``start``, ``stop``, ``kill``,
``restart``, ``logs``, ``describe``) so fault suites restart a process or a
container the same way. Readiness is judged over the wire: an Engine.IO
handshake on the polling transport answers with an ``open`` packet.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import shlex
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from realtime_conformance.harness.providers.processes import ManagedProcess, StopResult

# A graceful stop (SIGTERM) is judged against the stop bound (--stop-grace-s, FAULT-7). The harness
# waits this much longer before its SIGKILL, so a stop that ends just past the bound is measured
# (and judged late) rather than cut off and guessed at.
STOP_MARGIN_S = 2.0
# Stops that judge nothing about stopping (disposing of an instance, RECON-1's restart) give the
# gateway this long, or the bound if shorter, before the SIGKILL: how long a gateway takes to stop
# is FAULT-7's business alone, and one that hangs on SIGTERM then costs every other check seconds,
# not the whole bound.
QUICK_STOP_S = 3.0


def quick_grace(bound_s: float) -> float:
    """The grace of a stop that judges nothing about stopping (see QUICK_STOP_S)."""
    return min(QUICK_STOP_S, bound_s)


class Gateway(Protocol):
    url: str
    restartable: bool

    def start(self) -> None: ...
    def stop(self, grace_s: float | None = None) -> StopResult | None: ...
    def kill(self) -> None: ...
    def restart(self, *, hard: bool = False, grace_s: float | None = None) -> None: ...
    def logs(self) -> str: ...
    def log_size(self) -> int | None: ...
    def log_bytes(self, start: int, end: int | None = None) -> bytes: ...
    def describe(self) -> dict[str, str]: ...


def _open_packet(body: str) -> dict | None:
    if not body.startswith("0{"):
        return None
    try:
        return json.loads(body[1:])
    except json.JSONDecodeError:
        return None


def websocket_open(url: str, path: str, timeout: float) -> dict | None:
    """The ``open`` packet of a websocket-only Engine.IO handshake (for gateways without polling)."""
    import aiohttp

    async def probe() -> dict | None:
        target = f"{url.rstrip('/').replace('http', 'ws', 1)}{path}?EIO=4&transport=websocket"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.ws_connect(target) as ws:
                message = await ws.receive(timeout=timeout)
                return _open_packet(message.data) if isinstance(message.data, str) else None

    def run() -> dict | None:
        try:
            return asyncio.run(probe())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            return None

    # Its own thread and loop: callers may be sync code or may sit inside a running loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result(timeout=timeout + 5)


def engineio_open(url: str, path: str = "/socket.io/", timeout: float = 1.0) -> dict | None:
    """The Engine.IO 4 ``open`` packet's JSON from a handshake (polling, else websocket), or None."""
    probe = f"{url.rstrip('/')}{path}?EIO=4&transport=polling&t=probe"
    try:
        with urllib.request.urlopen(probe, timeout=timeout) as resp:
            return _open_packet(resp.read().decode("utf-8", errors="replace"))
    except urllib.error.HTTPError:
        return websocket_open(url, path, timeout)  # it answers HTTP, but maybe not polling
    except (urllib.error.URLError, OSError, ValueError):
        return None


def wait_for_engineio(url: str, timeout: float, path: str = "/socket.io/", alive: "callable | None" = None) -> None:
    """Readiness probe: block until ``url`` completes an Engine.IO handshake, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engineio_open(url, path) is not None:
            return
        if alive is not None and not alive():
            raise RuntimeError("the gateway process exited before it answered an Engine.IO handshake")
        time.sleep(0.05)
    raise TimeoutError(f"no Engine.IO handshake answered at {url}{path} within {timeout:.0f} s")


class UrlGateway:
    """A gateway that is already running; the harness can neither restart nor kill it."""

    restartable = False

    def __init__(self, url: str, *, path: str = "/socket.io/") -> None:
        self.url = url.rstrip("/")
        self.path = path

    def start(self) -> None:
        wait_for_engineio(self.url, timeout=10, path=self.path)

    def stop(self, grace_s: float | None = None) -> StopResult | None:
        return None  # someone else's process: nothing to stop, nothing measured

    def kill(self) -> None:
        raise RuntimeError("the harness cannot kill a gateway given by --gateway-url; use --gateway-cmd")

    def restart(self, *, hard: bool = False, grace_s: float | None = None) -> None:
        raise RuntimeError("the harness cannot restart a gateway given by --gateway-url; use --gateway-cmd")

    def logs(self) -> str:
        return ""

    def log_size(self) -> int | None:
        return None  # someone else's process: its log is not ours to read

    def log_bytes(self, start: int, end: int | None = None) -> bytes:
        return b""

    def describe(self) -> dict[str, str]:
        return {"kind": "url", "url": self.url}


class CommandGateway:
    """A gateway started as a child process from a command and an environment.

    The environment is the caller's, already rendered from the settings'
    template (PORT, RABBITMQ_URL, JWT_SECRET, ALLOWED_ORIGINS, ...).
    """

    restartable = True

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        url: str,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
        path: str = "/socket.io/",
        startup_timeout: float = 30.0,
        stop_grace_s: float = 10.0,
    ) -> None:
        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        self.url = url.rstrip("/")
        self.path = path
        self.startup_timeout = startup_timeout
        self.stop_grace_s = stop_grace_s  # the stop bound: how long a SIGTERM may take (FAULT-7)
        self._process = ManagedProcess(self.argv, name="gateway", log_path=log_path, env=env, cwd=cwd)

    def with_startup_timeout(self, seconds: float) -> "CommandGateway":
        self.startup_timeout = seconds
        return self

    @property
    def running(self) -> bool:
        return self._process.running

    @property
    def pid(self) -> int | None:
        """The started command's process id (the bench meters it and its children)."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def start(self) -> None:
        self._process.start()
        try:
            wait_for_engineio(self.url, self.startup_timeout, self.path, alive=lambda: self._process.running)
        except (TimeoutError, RuntimeError) as exc:
            tail = self._process.log_tail()
            self._process.kill()
            raise RuntimeError(f"gateway `{' '.join(self.argv)}` did not become ready: {exc}\n--- log tail ---\n{tail}") from None

    def stop(self, grace_s: float | None = None) -> StopResult | None:
        """SIGTERM, then SIGKILL after ``grace_s`` s (default: the stop bound plus STOP_MARGIN_S).

        Returns how it went (None if it was never started); also kept as ``last_stop``."""
        self._process.terminate(timeout=self.stop_grace_s + STOP_MARGIN_S if grace_s is None else grace_s)
        return self._process.last_stop

    @property
    def last_stop(self) -> StopResult | None:
        return self._process.last_stop

    def kill(self) -> None:
        self._process.kill()

    def restart(self, *, hard: bool = False, grace_s: float | None = None) -> None:
        self.kill() if hard else self.stop(grace_s)
        self.start()

    def logs(self) -> str:
        return self._process.log_tail(20000)

    def log_size(self) -> int:
        """Bytes the whole log holds so far (every start of the process appends): an offset."""
        return self._process.log_size()

    def log_bytes(self, start: int, end: int | None = None) -> bytes:
        """What the log holds between two offsets of ``log_size``, unabridged (``logs`` is a tail)."""
        return self._process.log_range(start, end)

    def describe(self) -> dict[str, str]:
        return {"kind": "process", "url": self.url, "command": " ".join(self.argv)}
