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
import threading
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


_QUEUE_COLUMNS = ("name", "durable", "arguments", "consumers", "messages_ready", "messages_unacknowledged")


def url_with_vhost(amqp_url: str, vhost: str) -> str:
    """The same broker URL, addressing another virtual host."""
    return urlsplit(amqp_url)._replace(path="/" + quote(vhost, safe="")).geturl()


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def user_of(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).username or "guest")


class RabbitCtl:
    """What rabbitmqctl tells and does, for brokers the harness can run it against.

    Subclasses say how to run it (``_ctl``). Passive declares cannot list queues or tell a
    queue's arguments; this can, exactly (management statistics lag by seconds).
    """

    def _ctl(self, *args: str, stdin: str | None = None) -> str | None:  # pragma: no cover - per broker kind
        raise NotImplementedError

    def queues(self, vhost: str = "/") -> dict[str, dict] | None:
        """Every queue of a vhost: durable, arguments (as rabbitmqctl prints them), consumers, counts."""
        out = self._ctl("list_queues", "-p", vhost, "-q", "--no-table-headers", *_QUEUE_COLUMNS)
        if out is None:
            return None
        queues = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == len(_QUEUE_COLUMNS):
                name, durable, arguments, consumers, ready, unacked = parts
                queues[name] = {"durable": durable == "true", "arguments": arguments, "consumers": int(consumers),
                                "ready": int(ready), "unacked": int(unacked)}
        return queues

    def queue_counts(self, queue: str, vhost: str = "/") -> dict[str, int] | None:
        """Ready and unacknowledged counts (exact, unlike management stats)."""
        info = (self.queues(vhost) or {}).get(queue)
        return {"ready": info["ready"], "unacked": info["unacked"]} if info else None

    def add_vhost(self, vhost: str, user: str) -> bool:
        """A fresh virtual host the user may use fully; False if it could not be made."""
        return (self._ctl("add_vhost", vhost) is not None
                and self._ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*") is not None)

    def add_vhosts(self, vhosts: list[str], user: str) -> list[str]:
        """Several vhosts at once: one rabbitmqctl call (each call costs a second or so), else one by one."""
        definitions = {"vhosts": [{"name": v} for v in vhosts],
                       "permissions": [{"user": user, "vhost": v, "configure": ".*", "write": ".*", "read": ".*"}
                                       for v in vhosts]}
        if self._ctl("import_definitions", "-", "--format", "json", stdin=json.dumps(definitions)) is not None:
            return list(vhosts)
        return [v for v in vhosts if self.add_vhost(v, user)]


class ExternalBroker:
    """A broker someone else runs; the harness neither starts nor restarts it."""

    restartable = False

    def __init__(self, amqp_url: str, api_url: str | None = None) -> None:
        self.amqp_url = amqp_url
        parts = urlsplit(amqp_url)
        # The management API, where the broker has it: the only way to read unacked counts from outside.
        self.api_url = (api_url or f"http://{parts.hostname or LOOPBACK}:15672").rstrip("/")
        self._api_checked: bool | None = None

    def _api(self, path: str, method: str = "GET", body: dict | None = None) -> object | None:
        """A management API call as the AMQP URL's user; None if it does not answer, or if the
        API that answers is not this broker's (another node's on the same host)."""
        if path != "overview" and not self._same_broker():
            return None
        return self._call(path, method, body)

    def _same_broker(self) -> bool:
        if self._api_checked is None:
            overview = self._call("overview")
            port = urlsplit(self.amqp_url).port or 5672
            listeners = overview.get("listeners", []) if isinstance(overview, dict) else []
            self._api_checked = any(isinstance(item, dict) and item.get("port") == port for item in listeners)
        return self._api_checked

    def _call(self, path: str, method: str = "GET", body: dict | None = None) -> object | None:
        parts = urlsplit(self.amqp_url)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.api_url}/api/{path}", data=data, method=method)
        credentials = f"{unquote(parts.username or 'guest')}:{unquote(parts.password or 'guest')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=3) as resp:
                raw = resp.read()
            return json.loads(raw) if raw else {}
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def queues(self, vhost: str = "/") -> dict[str, dict] | None:
        """Every queue of a vhost from the management API (counts lag by a few seconds there)."""
        listed = self._api(f"queues/{quote(vhost, safe='')}")
        if not isinstance(listed, list):
            return None
        return {q["name"]: {"durable": bool(q.get("durable")), "arguments": json.dumps(q.get("arguments") or {}),
                            "consumers": int(q.get("consumers") or 0), "ready": int(q.get("messages_ready") or 0),
                            "unacked": int(q.get("messages_unacknowledged") or 0)} for q in listed}

    def queue_counts(self, queue: str, vhost: str | None = None) -> dict[str, int] | None:
        """Ready and unacknowledged counts from the management API, or None if it does not answer."""
        vhost = vhost_of(self.amqp_url) if vhost is None else vhost
        body = self._api(f"queues/{quote(vhost, safe='')}/{quote(queue, safe='')}")
        if not isinstance(body, dict):
            return None
        return {"ready": int(body.get("messages_ready", 0)), "unacked": int(body.get("messages_unacknowledged", 0))}

    def add_vhost(self, vhost: str, user: str) -> bool:
        name = quote(vhost, safe="")
        return (self._api(f"vhosts/{name}", "PUT", {}) is not None
                and self._api(f"permissions/{name}/{quote(user, safe='')}", "PUT",
                              {"configure": ".*", "write": ".*", "read": ".*"}) is not None)

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


class PrivateRabbitNode(RabbitCtl):
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
        # rabbitmqctl calls (the vhost maker's, a check's) may run on other threads: close()
        # takes this lock so it never pulls the node and its files away under a running call.
        self._ctl_lock = threading.Lock()
        self._closed = False

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
            # No Erlang VM of this node's (the CLI's, or the throwaway one it runs to make sure an
            # epmd is up) may start an `epmd -daemon`: the daemon leaves the node's process group and
            # would outlive the run. Our own epmd is always up while the node is.
            ERL_FLAGS="-start_epmd false",
            # A VM that crashes writes its dump into the node's work directory, not the caller's cwd.
            ERL_CRASH_DUMP=str(self.workdir / "erl_crash.dump"),
        )
        return env

    def start(self) -> None:
        """Start epmd (once) and the node; return when it accepts AMQP connections."""
        self._prepare()
        self._closed = False
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

    def _ctl(self, *args: str, stdin: str | None = None) -> str | None:
        # Never call the CLI once the node is gone or going: with no node there is nothing to ask.
        with self._ctl_lock:
            if (self._closed or self._epmd is None or not self._epmd.running
                    or self._server is None or not self._server.running):
                return None
            ctl = RABBITMQ_SERVER.with_name("rabbitmqctl")
            try:
                return subprocess.run([str(ctl), *args], env=self.env(), capture_output=True, text=True,
                                      input=stdin, timeout=30, check=True).stdout
            except (subprocess.SubprocessError, OSError):
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
        with self._ctl_lock:  # waits for a rabbitmqctl call in flight on another thread
            self._closed = True
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
