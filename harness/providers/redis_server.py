"""Redis for gateway replicas: a private redis-server on a free loopback port, or an external URL.

Replicas of one gateway share what a single instance keeps in memory (the Socket.IO adapter's
pub/sub) through it. Like the brokers, one small class per way of getting one, with the same
surface (``url``, ``start``, ``stop``, ``describe``); readiness is a PING answered over the wire.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from realtime_conformance.harness.providers.ports import LOOPBACK, free_port
from realtime_conformance.harness.providers.processes import ManagedProcess

REDIS_SERVER = "redis-server"


class Redis(Protocol):
    url: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def describe(self) -> dict[str, str]: ...


def redis_answers(host: str, port: int, password: str | None = None, timeout: float = 1.0) -> bool:
    """True when host:port answers a PING (after AUTH, if a password is given) with +PONG."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            if password:
                sock.sendall(_command("AUTH", password))
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(_command("PING"))
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _command(*parts: str) -> bytes:
    """One command in RESP, the protocol's request form."""
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def wait_for_redis(url: str, timeout: float, alive: "callable | None" = None) -> None:
    """Readiness probe: block until the Redis at ``url`` answers PING, or raise TimeoutError."""
    parts = urlsplit(url)
    host, port = parts.hostname or LOOPBACK, parts.port or 6379
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_answers(host, port, parts.password):
            return
        if alive is not None and not alive():
            raise RuntimeError(f"redis-server exited before it answered PING on {host}:{port}")
        time.sleep(0.05)
    raise TimeoutError(f"no Redis answered PING at {host}:{port} within {timeout:.0f} s")


class ExternalRedis:
    """A Redis someone else runs (``--redis-url``); the harness only checks it answers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.startup_timeout = 10.0

    def with_startup_timeout(self, seconds: float) -> "ExternalRedis":
        self.startup_timeout = seconds
        return self

    def start(self) -> None:
        wait_for_redis(self.url, self.startup_timeout)

    def stop(self) -> None:
        pass

    def describe(self) -> dict[str, str]:
        parts = urlsplit(self.url)
        return {"kind": "external", "url": f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"}


class PrivateRedis:
    """A redis-server of the harness's own: free loopback port, no persistence, own folder, reaped."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="rtc-redis-"))
        self.port = free_port()
        self.startup_timeout = 10.0
        self.program = REDIS_SERVER
        self._server: ManagedProcess | None = None

    def with_startup_timeout(self, seconds: float) -> "PrivateRedis":
        self.startup_timeout = seconds
        return self

    def with_program(self, program: str) -> "PrivateRedis":
        self.program = program
        return self

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def start(self) -> "PrivateRedis":
        """Start the server; return (itself) when it answers PING."""
        if shutil.which(self.program) is None:
            raise FileNotFoundError(f"{self.program} not found: install Redis (apt-get install redis-server), "
                                    "or give an external one with --redis-url redis://host:port")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [self.program, "--bind", LOOPBACK, "--port", str(self.port), "--dir", str(self.workdir),
                "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"]
        self._server = ManagedProcess(argv, name="redis-server", log_path=self.log_path)
        self._server.start()
        try:
            wait_for_redis(self.url, self.startup_timeout, alive=lambda: self.running)
        except (TimeoutError, RuntimeError) as exc:
            tail = self._server.log_tail()
            self._server.kill()
            raise RuntimeError(f"private redis-server did not start: {exc}\n--- log tail ---\n{tail}") from None
        return self

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    def stop(self) -> None:
        if self._server is not None:
            self._server.terminate(timeout=5)

    def close(self) -> None:
        """Stop the server and remove its folder if it made it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def describe(self) -> dict[str, str]:
        return {"kind": "process", "url": self.url, "server": self.program}
