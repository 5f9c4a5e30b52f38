"""RabbitMQ for the harness: a private node on free loopback ports, or an external URL.

One small class per way of getting a broker, all with the same surface
(``amqp_url``, ``start``, ``stop``, ``kill``, ``restart``), so suites and fault
tests do not care where the broker comes from.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Protocol
import urllib.error
import urllib.request
from urllib.parse import quote, unquote, urlsplit

from realtime_conformance.harness.providers.ports import LOOPBACK, free_port
from realtime_conformance.harness.providers.processes import ManagedProcess

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


class Broker(Protocol):
    amqp_url: str
    restartable: bool

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def restart(self, *, hard: bool = True) -> None: ...
    def describe(self) -> dict[str, str]: ...


def amqp_accepts(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when host:port answers the AMQP 0-9-1 header with a Connection.Start frame."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_AMQP_HEADER)
            first = sock.recv(1)
            return first == b"\x01"  # frame type 1: a method frame (Connection.Start)
    except OSError:
        return False


def wait_for_amqp(url: str, timeout: float) -> None:
    """Readiness probe: block until the broker at ``url`` speaks AMQP, or raise TimeoutError."""
    parts = urlsplit(url)
    host, port = parts.hostname or LOOPBACK, parts.port or 5672
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if amqp_accepts(host, port):
            return
        time.sleep(0.1)
    raise TimeoutError(f"no AMQP broker answered at {host}:{port} within {timeout:.0f} s")


class ExternalBroker:
    """A broker someone else runs; the harness neither starts nor restarts it."""

    restartable = False

    def __init__(self, amqp_url: str, api_url: str | None = None) -> None:
        self.amqp_url = amqp_url
        parts = urlsplit(amqp_url)
        # The management API, where the broker has it: the only way to read unacked counts from outside.
        self.api_url = (api_url or f"http://{parts.hostname or LOOPBACK}:15672").rstrip("/")

    def queue_counts(self, queue: str) -> dict[str, int] | None:
        """Ready and unacknowledged counts from the management API, or None if it does not answer."""
        parts = urlsplit(self.amqp_url)
        vhost = quote(unquote(parts.path[1:]) if len(parts.path) > 1 else "/", safe="")
        request = urllib.request.Request(f"{self.api_url}/api/queues/{vhost}/{quote(queue, safe='')}")
        credentials = f"{unquote(parts.username or 'guest')}:{unquote(parts.password or 'guest')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
        try:
            with urllib.request.urlopen(request, timeout=3) as resp:
                body = json.loads(resp.read())
            return {"ready": int(body.get("messages_ready", 0)), "unacked": int(body.get("messages_unacknowledged", 0))}
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def start(self) -> None:
        wait_for_amqp(self.amqp_url, timeout=10)

    def stop(self) -> None:
        pass

    def kill(self) -> None:
        raise RuntimeError("an external broker cannot be killed by the harness; use --broker process")

    def restart(self, *, hard: bool = True) -> None:
        raise RuntimeError("an external broker cannot be restarted by the harness; use --broker process")

    def describe(self) -> dict[str, str]:
        parts = urlsplit(self.amqp_url)
        return {"kind": "external", "url": f"{parts.scheme}://{parts.hostname}:{parts.port or 5672}{parts.path}"}


class PrivateRabbitNode:
    """A RabbitMQ node of the harness's own: own epmd, ports, cookie, data and logs.

    Restartable on the same ports and data, so durable queues and persistent
    messages survive ``kill()`` + ``start()`` as they would in production.
    """

    restartable = True

    def __init__(self, workdir: Path | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="rtc-rabbit-"))
        self.node_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.nodename = f"rtc{uuid.uuid4().hex[:8]}@localhost"
        self.startup_timeout = 60.0
        self.management_port: int | None = None
        self._server: ManagedProcess | None = None
        self._epmd: ManagedProcess | None = None
        self._prepared = False

    def with_startup_timeout(self, seconds: float) -> "PrivateRabbitNode":
        self.startup_timeout = seconds
        return self

    def with_management(self) -> "PrivateRabbitNode":
        """Enable the management plugin on a free loopback port (``management_url``)."""
        self.management_port = free_port()
        return self

    @property
    def management_url(self) -> str | None:
        return f"http://{LOOPBACK}:{self.management_port}" if self.management_port else None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{self.node_port}/"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def _prepare(self) -> None:
        if self._prepared:
            return
        if not RABBITMQ_SERVER.exists():
            raise FileNotFoundError(
                f"{RABBITMQ_SERVER} not found: install Debian's rabbitmq-server package "
                "(apt-get install rabbitmq-server), or use --broker external --amqp-url ..."
            )
        home = self.workdir / "home"
        for sub in ("home", "mnesia", "logs"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
        conf = (
            f"listeners.tcp.default = {LOOPBACK}:{self.node_port}\n"
            "loopback_users = none\n"
            "disk_free_limit.absolute = 50MB\n"
        )
        if self.management_port:
            conf += f"management.tcp.port = {self.management_port}\nmanagement.tcp.ip = {LOOPBACK}\n"
        (self.workdir / "rabbitmq.conf").write_text(conf)
        plugins = "[rabbitmq_management]." if self.management_port else "[]."
        (self.workdir / "enabled_plugins").write_text(plugins + "\n")
        (self.workdir / "rabbitmq-env.conf").write_text("")
        self._prepared = True

    def env(self) -> dict[str, str]:
        """The environment that addresses this node (also right for rabbitmqctl)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.workdir / "home"),
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS=LOOPBACK,
            RABBITMQ_NODE_PORT=str(self.node_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS=LOOPBACK,
            RABBITMQ_MNESIA_BASE=str(self.workdir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.workdir / "logs"),
            RABBITMQ_LOGS="-",
            RABBITMQ_CONFIG_FILE=str(self.workdir / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.workdir / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(self.workdir / "rabbitmq-env.conf"),
            RABBITMQ_PID_FILE=str(self.workdir / "rabbit.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def start(self) -> None:
        """Start epmd (once) and the node; return when it accepts AMQP connections."""
        self._prepare()
        if self._epmd is None or not self._epmd.running:
            self._epmd = ManagedProcess(
                ["epmd", "-port", str(self.epmd_port), "-address", LOOPBACK],
                name="epmd",
                log_path=self.workdir / "epmd.log",
            )
            self._epmd.start()
        self._server = ManagedProcess(
            [str(RABBITMQ_SERVER)], name="rabbitmq-server", log_path=self.log_path, env=self.env()
        )
        self._server.start()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if amqp_accepts(LOOPBACK, self.node_port):
                return
            if not self._server.running:
                break
            time.sleep(0.1)
        tail = self._server.log_tail()
        self._server.kill()
        raise RuntimeError(
            f"private RabbitMQ node did not accept AMQP on {LOOPBACK}:{self.node_port} "
            f"within {self.startup_timeout:.0f} s; log tail:\n{tail}"
        )

    def queue_counts(self, queue: str) -> dict[str, int] | None:
        """Ready and unacknowledged counts from rabbitmqctl (exact, unlike management stats)."""
        ctl = RABBITMQ_SERVER.with_name("rabbitmqctl")
        try:
            out = subprocess.run([str(ctl), "list_queues", "-q", "--no-table-headers", "name", "messages_ready",
                                  "messages_unacknowledged"], env=self.env(), capture_output=True, text=True,
                                 timeout=30, check=True).stdout
        except (subprocess.SubprocessError, OSError):
            return None
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[0] == queue:
                return {"ready": int(parts[1]), "unacked": int(parts[2])}
        return None

    def kill(self) -> None:
        """SIGKILL the node's whole process group (epmd stays, as on a real host)."""
        if self._server is not None:
            self._server.kill()

    def stop(self) -> None:
        if self._server is not None:
            self._server.terminate(timeout=15)

    def restart(self, *, hard: bool = True) -> None:
        self.kill() if hard else self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    def close(self) -> None:
        """Stop everything and remove the work directory if the node created it."""
        self.stop()
        if self._epmd is not None:
            self._epmd.terminate(timeout=5)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def describe(self) -> dict[str, str]:
        return {"kind": "process", "url": f"amqp://{LOOPBACK}:{self.node_port}/", "node": self.nodename,
                "server": str(RABBITMQ_SERVER)}

    def __enter__(self) -> "PrivateRabbitNode":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
