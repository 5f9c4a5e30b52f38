"""RabbitMQ, Redis and the gateway under test as containers (testcontainers-python).

Same surfaces as :class:`harness.providers.broker.PrivateRabbitNode`,
:class:`harness.providers.redis_server.PrivateRedis` and
:class:`harness.providers.gateway.CommandGateway`, so suites and fault tests do not care
whether a broker, a Redis or a gateway is a child process or a container.

Choices, and why:

* Every published port is bound to 127.0.0.1 on a fixed host port chosen with
  :func:`harness.providers.ports.free_port` before the container is created. The harness
  talks to loopback only (testcontainers would report the bridge gateway,
  172.17.0.1, inside a container), and a fixed port survives ``docker kill`` +
  ``docker start``, so a URL handed out once stays valid across restarts.
* A restart keeps the container (``docker start`` it again), so the broker's
  data directory, and with it durable queues and persistent messages, survive
  a SIGKILL, as they would on a real host.
* Readiness is judged over the wire, never from log lines: an AMQP
  Connection.Start for RabbitMQ, a PING for Redis, an Engine.IO handshake for
  the gateway.
* Everything created (containers, networks) is recorded in a module registry
  and removed by ``close()``, on a failed start, and at interpreter exit, so a
  failed or interrupted run leaves nothing behind. That registry does the job
  of testcontainers' reaper (Ryuk), which is disabled by default here because
  its image would have to be pulled; set TESTCONTAINERS_RYUK_DISABLED=false to
  have both.

Construction (the plugin does this for ``--broker container`` and
``--gateway-image``); ``RabbitContainer(image)`` alone brings its own
network (``broker.network``), removed with the broker::

    with ContainerNetwork() as net:
        broker = RabbitContainer("rtc/rabbitmq:local", network=net)
        broker.start()                       # broker.amqp_url for the harness
        gw = ImageGateway("rtc/agent-portal-gateway:local", network=net,
                          env={"RABBITMQ_URL": broker.gateway_amqp_url, ...})
        gw.start()                           # gw.url for clients
        ...
        gw.close(); broker.close()

A cluster target adds one ``RedisContainer(network=net)`` (``redis.url`` for the
harness, ``redis.gateway_url`` for the gateways) and N gateways, each with its own
host port and ``with_volume(shared, shared)`` on one host folder they share.
"""

from __future__ import annotations

import atexit
import math
import os
import socket
import struct
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Self

import docker
import docker.errors
from docker.models.containers import Container

if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
    # Set before testcontainers reads it: the reaper's image cannot be pulled
    # where no registry is reachable; our own registry below reaps instead.
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"

from testcontainers.core.container import DockerContainer  # noqa: E402
from testcontainers.core.network import Network  # noqa: E402

from realtime_conformance.harness.providers.broker import RabbitCtl, wait_for_amqp  # noqa: E402
from realtime_conformance.harness.providers.gateway import STOP_MARGIN_S, wait_for_engineio  # noqa: E402
from realtime_conformance.harness.providers.processes import StopResult  # noqa: E402
from realtime_conformance.harness.providers.ports import LOOPBACK, free_port  # noqa: E402
from realtime_conformance.harness.providers.redis_server import wait_for_redis  # noqa: E402
from realtime_conformance.harness.redaction import strip_terminal_codes  # noqa: E402

DEFAULT_RABBITMQ_IMAGE = "rabbitmq:3-management"
LOCAL_RABBITMQ_IMAGE = "rtc/rabbitmq:local"
LOCAL_GATEWAY_IMAGE = "rtc/agent-portal-gateway:local"
LOCAL_REDIS_IMAGE = "rtc/redis:local"
IMAGE_FLAGS = {"rabbitmq": "--rabbitmq-image", "redis": "--redis-image", "gateway": "--gateway-image"}
HARNESS_LABEL = "io.rtc-conformance.harness"
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


# --------------------------------------------------------------------------
# Registry: whatever is still open at interpreter exit is removed.
# --------------------------------------------------------------------------


class _Closable(Protocol):
    def close(self) -> None: ...


_LIVE: "dict[int, tuple[int, _Closable]]" = {}
_LOCK = threading.Lock()


def _register(obj: _Closable, order: int) -> None:
    """Record ``obj``; ``order`` sorts the reaping (containers 0, networks 1)."""
    with _LOCK:
        _LIVE[id(obj)] = (order, obj)


def _forget(obj: _Closable) -> None:
    with _LOCK:
        _LIVE.pop(id(obj), None)


def live_resources() -> list[_Closable]:
    """Containers and networks created here and not closed yet."""
    with _LOCK:
        return [obj for _, obj in sorted(_LIVE.values(), key=lambda item: item[0])]


def reap_all() -> None:
    """Close every container, then every network, still registered (never raises)."""
    for obj in live_resources():
        try:
            obj.close()
        except Exception:  # noqa: BLE001 - best effort at exit; keep reaping the rest
            pass


atexit.register(reap_all)


def docker_available(timeout: float = 3.0) -> bool:
    """True when a Docker engine (``DOCKER_HOST`` or the default socket) answers a ping within ``timeout`` s."""
    try:
        client = docker.from_env(timeout=max(1, int(timeout)))
    except Exception:  # noqa: BLE001 - no socket, bad DOCKER_HOST, ...: all mean "not available"
        return False
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        return False
    finally:
        client.close()


def image_exists(image: str, timeout: float = 10.0) -> bool:
    """True when ``image`` is present in the engine's local store (no pull is tried)."""
    client = docker.from_env(timeout=max(1, int(timeout)))
    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False
    finally:
        client.close()


# --------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------


class ContainerNetwork:
    """A user-defined bridge network, so containers reach each other by alias.

    The default bridge has no DNS; on a user network the gateway reaches the
    broker as ``rabbitmq:5672`` whatever its address is after a restart.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"rtc-{uuid.uuid4().hex[:12]}"
        self._network: Network | None = None

    def create(self) -> "ContainerNetwork":
        if self._network is None:
            net = Network(docker_network_kw={"labels": {HARNESS_LABEL: "1"}})
            net.name = self.name
            net.create()
            self._network = net
            _register(self, 1)
        return self

    @property
    def testcontainers_network(self) -> Network:
        """The testcontainers object, for ``DockerContainer.with_network``."""
        if self._network is None:
            raise RuntimeError(f"network {self.name} is not created yet; call create() or use `with`")
        return self._network

    def close(self) -> None:
        """Remove the network.

        Containers still attached make this fail with RuntimeError; the network
        then stays registered and is removed at exit, after the containers.
        """
        net = self._network
        if net is None:
            return
        try:
            net.remove()
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise RuntimeError(
                f"network {self.name} not removed ({exc.explanation or exc}): close the containers on it "
                "first; it is retried at exit"
            ) from None
        self._network = None
        _forget(self)

    def __enter__(self) -> "ContainerNetwork":
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------
# One container, kept across restarts
# --------------------------------------------------------------------------


class _ManagedContainer:
    """One container created once, then started, killed and started again.

    ``start()`` creates the container the first time and ``docker start``s it
    afterwards; ``stop()``/``kill()`` leave it in place (its data and port
    bindings with it); ``close()`` removes it.
    """

    def __init__(
        self,
        image: str,
        *,
        role: str,
        network: ContainerNetwork | None,
        aliases: tuple[str, ...],
        ports: Mapping[int, int],
        env: Mapping[str, str],
        command: str | list[str] | None = None,
        volumes: Mapping[str, str] | None = None,
    ) -> None:
        self.image = image
        self.role = role
        self.network = network
        self.aliases = aliases
        self.ports = dict(ports)  # container port -> host port on 127.0.0.1
        self.env = dict(env)
        self.command = command
        self.volumes = dict(volumes or {})  # host folder -> container path, bound read-write
        self.name = f"rtc-{role}-{uuid.uuid4().hex[:10]}"
        self._tc: DockerContainer | None = None
        self.last_exit_code: int | None = None  # kept after the container is removed

    @property
    def created(self) -> bool:
        """True once Docker has created the container (until ``close()``)."""
        return self._docker_container() is not None

    def _docker_container(self) -> Container | None:
        return self._tc.get_wrapped_container() if self._tc is not None else None

    def ensure_image(self) -> None:
        """Pull the image only if it is not local, and say plainly what to do when that fails."""
        if image_exists(self.image):
            return
        client = docker.from_env(timeout=300)
        try:
            client.images.pull(self.image)
        except docker.errors.APIError as exc:
            flag = IMAGE_FLAGS.get(self.role, "--gateway-image")
            reason = str(exc.explanation or exc).splitlines()[0][:300]
            raise RuntimeError(
                f"image {self.image} is not in the local Docker store and could not be pulled ({reason}). "
                f"Build or pull it first, or choose another with {flag}. Without a registry, "
                "scripts/prepare-docker.sh builds rtc/rabbitmq:local, rtc/redis:local and "
                "rtc/agent-portal-gateway:local."
            ) from None
        finally:
            client.close()

    def create_and_start(self) -> None:
        self.ensure_image()
        tc = DockerContainer(self.image, env=dict(self.env), name=self.name, command=self.command)
        for container_port, host_port in self.ports.items():
            # docker-py accepts (ip, port): publish on loopback only.
            tc.ports[f"{container_port}/tcp"] = (LOOPBACK, host_port)  # type: ignore[assignment]
        for host_dir, container_dir in self.volumes.items():
            tc.with_volume_mapping(host_dir, container_dir, mode="rw")
        if self.network is not None:
            tc.with_network(self.network.testcontainers_network)
            if self.aliases:
                tc.with_network_aliases(*self.aliases)
        tc.with_kwargs(labels={HARNESS_LABEL: "1", f"{HARNESS_LABEL}.role": self.role})
        self._tc = tc
        _register(self, 0)
        tc.start()

    def start_again(self) -> None:
        container = self._docker_container()
        if container is None:
            raise RuntimeError(f"container {self.name} does not exist (closed?)")
        container.start()

    def _inspect(self) -> Container | None:
        """The container with fresh state, or None if it is not there (never created, or removed)."""
        container = self._docker_container()
        if container is None:
            return None
        try:
            container.reload()
        except docker.errors.NotFound:
            return None
        return container

    def running(self) -> bool:
        container = self._inspect()
        return container is not None and container.status == "running"

    def kill(self) -> None:
        container = self._inspect()
        if container is None or container.status != "running":
            return
        try:
            container.kill()  # SIGKILL
        except docker.errors.APIError:
            pass  # it exited between the check and the kill
        container.wait(timeout=30)

    def stop(self, timeout: int) -> None:
        container = self._inspect()
        if container is not None and container.status == "running":
            container.stop(timeout=timeout)

    def logs(self, max_chars: int = 20000) -> str:
        return strip_terminal_codes(self.raw_logs().decode("utf-8", errors="replace"))[-max_chars:]

    def raw_logs(self) -> bytes:
        """Everything the container wrote (stdout and stderr, as ``docker logs`` shows them): offsets
        into it stay valid as it grows."""
        container = self._docker_container()
        if container is None:
            return b""
        try:
            return bytes(container.logs(stdout=True, stderr=True))
        except docker.errors.NotFound:
            return b""

    def state(self) -> str:
        """"running", "exited with code N", or "not created", for error messages."""
        container = self._inspect()
        if container is None:
            return "not created"
        if container.status == "running":
            return "still running"
        self.last_exit_code = container.attrs.get("State", {}).get("ExitCode")
        return f"exited with code {self.last_exit_code}"

    def image_id(self) -> str:
        container = self._docker_container()
        return str(container.attrs.get("Image", ""))[:19] if container is not None else ""

    def close(self) -> None:
        """Remove the container (and its anonymous volumes)."""
        tc, self._tc = self._tc, None
        if tc is not None:
            try:
                tc.stop(force=True, delete_volume=True)
            except docker.errors.NotFound:
                pass
            finally:
                _forget(self)


def _start_or_clean_up(what: str, managed: _ManagedContainer, wait_ready: Callable[[], None]) -> None:
    """Create or ``docker start`` the container and wait; on failure raise with its log tail.

    A container that never became ready the first time is removed at once; one
    that fails on a restart is killed but kept (its data may matter), and goes
    with ``close()`` or at exit.
    """
    first = not managed.created
    try:
        if first:
            managed.create_and_start()
        else:
            managed.start_again()
        wait_ready()
    except Exception as exc:  # noqa: BLE001 - any failure: report it with the container's own words
        state = managed.state()
        message = f"{what} ({managed.image}, container {managed.name}, {state}) did not become ready: {exc}"
        if state != "not created":
            message += f"\n--- container log tail ---\n{managed.logs(4000)}"
        try:
            managed.close() if first else managed.kill()
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            pass
        raise RuntimeError(message) from None


# --------------------------------------------------------------------------
# RabbitMQ
# --------------------------------------------------------------------------


def amqp_server_version(host: str, port: int, timeout: float = 2.0) -> str:
    """The ``version`` server property of the broker's Connection.Start frame ("" if unknown)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_AMQP_HEADER)
            data = b""
            deadline = time.monotonic() + timeout
            while len(data) < 7 and time.monotonic() < deadline:
                chunk = sock.recv(4096)
                if not chunk:
                    return ""
                data += chunk
            size = struct.unpack(">I", data[3:7])[0]
            while len(data) < 7 + size + 1 and time.monotonic() < deadline:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except (OSError, struct.error):
        return ""
    marker = data.find(b"\x07versionS")
    if marker < 0:
        return ""
    start = marker + len(b"\x07versionS")
    length = struct.unpack(">I", data[start : start + 4])[0]
    return data[start + 4 : start + 4 + length].decode("utf-8", errors="replace")


class _ServiceContainer:
    """What a broker and a Redis container share: a published loopback port, a network alias,
    ``with_*`` setters before start, kill / stop / restart on the same container, and removal
    (with the network it brought, if it brought one). Subclasses make ``self._container`` and
    say how to start and when the service is ready."""

    restartable = True
    CONTAINER_PORT: int
    DEFAULT_ALIAS: str
    STOP_GRACE_S: int

    def __init__(self, image: str, *, network: ContainerNetwork | None, alias: str, host_port: int | None,
                 startup_timeout: float) -> None:
        self.image = image
        # Without a network of the caller's, the service brings its own, so its network URL
        # always works for a gateway started on ``self.network``.
        self._own_network = network is None
        self.network: ContainerNetwork = network if network is not None else ContainerNetwork()
        self.alias = alias
        self.host_port = host_port or free_port()
        self.startup_timeout = startup_timeout
        self._container: _ManagedContainer

    def with_network(self, network: ContainerNetwork, alias: str | None = None) -> Self:
        self._before_start("with_network")
        self._own_network = False
        self.network, self.alias = network, alias or self.DEFAULT_ALIAS
        self._container.network, self._container.aliases = network, (self.alias,)
        return self

    def with_host_port(self, port: int) -> Self:
        self._before_start("with_host_port")
        self.host_port = port
        self._container.ports = {self.CONTAINER_PORT: port}
        return self

    def with_startup_timeout(self, seconds: float) -> Self:
        self.startup_timeout = seconds
        return self

    def _before_start(self, what: str) -> None:
        if self._container.created:
            raise RuntimeError(f"{what}() after start(): the container exists already; call it before start()")

    @property
    def container_name(self) -> str:
        return self._container.name

    @property
    def running(self) -> bool:
        return self._container.running()

    def _start(self, what: str, wait_ready: Callable[[float], None]) -> None:
        """Create the container the first time, ``docker start`` it afterwards; return once ready."""
        if self._own_network:
            self.network.create()
        _start_or_clean_up(what, self._container, lambda: wait_ready(self.startup_timeout))

    def kill(self) -> None:
        """SIGKILL the service (the container and its data stay, for ``start()``)."""
        self._container.kill()

    def stop(self) -> None:
        """Stop the service gracefully (SIGTERM, then a grace period); the container stays."""
        self._container.stop(timeout=self.STOP_GRACE_S)

    def restart(self, *, hard: bool = True) -> None:
        """Kill (hard) or stop the service, then start the same container: same port, same data."""
        self.kill() if hard else self.stop()
        self.start()

    def start(self) -> None:  # pragma: no cover - per service
        raise NotImplementedError

    def logs(self) -> str:
        return self._container.logs()

    def close(self) -> None:
        """Remove the container, and the network if the service brought its own."""
        try:
            self._container.close()
        finally:
            if self._own_network:
                try:
                    self.network.close()
                except RuntimeError:
                    pass  # a gateway still on it: removed at exit, after the containers

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RabbitContainer(_ServiceContainer, RabbitCtl):
    """A RabbitMQ broker in a container, restartable on the same port and data.

    ``amqp_url`` is for the harness (127.0.0.1 and a published port);
    ``gateway_amqp_url`` is for containers on the same network (the alias).
    """

    CONTAINER_PORT = 5672
    DEFAULT_ALIAS = "rabbitmq"
    STOP_GRACE_S = 15

    def __init__(
        self,
        image: str = LOCAL_RABBITMQ_IMAGE,
        *,
        network: ContainerNetwork | None = None,
        alias: str = "rabbitmq",
        host_port: int | None = None,
        username: str = "guest",
        password: str = "guest",
        startup_timeout: float = 90.0,
    ) -> None:
        super().__init__(image, network=network, alias=alias, host_port=host_port, startup_timeout=startup_timeout)
        self.username = username
        self.password = password
        self.version = ""
        # Only for other credentials than guest/guest (the official image honours these).
        env = {} if (username, password) == ("guest", "guest") else {
            "RABBITMQ_DEFAULT_USER": username, "RABBITMQ_DEFAULT_PASS": password}
        self._container = _ManagedContainer(
            image, role="rabbitmq", network=self.network, aliases=(alias,), ports={5672: self.host_port}, env=env
        )

    @property
    def amqp_url(self) -> str:
        return f"amqp://{self.username}:{self.password}@{LOOPBACK}:{self.host_port}/"

    @property
    def gateway_amqp_url(self) -> str:
        """The URL a container on ``self.network`` uses (the network alias, port 5672)."""
        return f"amqp://{self.username}:{self.password}@{self.alias}:5672/"

    def start(self) -> None:
        """Create the container the first time, ``docker start`` it afterwards; return when it speaks AMQP."""
        self._start("RabbitMQ", self.wait_ready)
        self.version = self.version or amqp_server_version(LOOPBACK, self.host_port)

    def wait_ready(self, timeout: float) -> None:
        """Readiness by protocol: block until AMQP Connection.Start answers on the published port.

        The container's state is checked between probes, so a broker that
        exits at start fails now rather than after the whole timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no AMQP answer on {LOOPBACK}:{self.host_port} within {timeout:.0f} s")
            try:
                wait_for_amqp(self.amqp_url, timeout=min(2.0, remaining))
                return
            except TimeoutError:
                if not self._container.running():
                    raise RuntimeError("the container exited") from None

    def _ctl(self, *args: str, stdin: str | None = None) -> str | None:
        """rabbitmqctl in the container; None if it cannot run or fails (or needs standard input)."""
        if not self.running or stdin is not None:
            return None
        try:
            # Debian's /usr/sbin/rabbitmqctl switches to the rabbitmq user, whose
            # cookie is not the server's (HOME=/root); call the real one there.
            container = self._container._docker_container()
            if container is None:
                return None
            result = container.exec_run(
                ["sh", "-c", 'ctl=/usr/lib/rabbitmq/bin/rabbitmqctl; [ -x "$ctl" ] || ctl=rabbitmqctl; exec "$ctl" "$@"',
                 "rabbitmqctl", *args], demux=False)
        except docker.errors.APIError:
            return None
        if result.exit_code != 0:
            return None
        return (result.output or b"").decode("utf-8", errors="replace")

    def describe(self) -> dict[str, str]:
        return {
            "kind": "container",
            "image": self.image,
            "url": f"amqp://{LOOPBACK}:{self.host_port}/",
            "version": self.version,
            "container": self._container.name,
        }


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


class RedisContainer(_ServiceContainer):
    """A Redis in a container: what gateway replicas share (adapter pub/sub, shared state).

    ``url`` is for the harness (127.0.0.1 and a published port); ``gateway_url``
    is for containers on the same network (the alias). No persistence: a
    cluster's Redis lives as long as the cluster. Without a network of the
    caller's it brings its own, removed with it.
    """

    CONTAINER_PORT = 6379
    DEFAULT_ALIAS = "redis"
    STOP_GRACE_S = 5
    # Every image gets the same command, so Debian's redis-server (rtc/redis:local) and the
    # official image behave alike: reachable from the network, nothing written to disk.
    COMMAND = ["redis-server", "--bind", "0.0.0.0", "--port", str(CONTAINER_PORT), "--protected-mode", "no",
               "--save", "", "--appendonly", "no", "--dir", "/tmp"]

    def __init__(
        self,
        image: str = LOCAL_REDIS_IMAGE,
        *,
        network: ContainerNetwork | None = None,
        alias: str = "redis",
        host_port: int | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(image, network=network, alias=alias, host_port=host_port, startup_timeout=startup_timeout)
        self._container = _ManagedContainer(
            image, role="redis", network=self.network, aliases=(alias,),
            ports={self.CONTAINER_PORT: self.host_port}, env={}, command=list(self.COMMAND))

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.host_port}/0"

    @property
    def gateway_url(self) -> str:
        """The URL a container on ``self.network`` uses (the network alias, port 6379)."""
        return f"redis://{self.alias}:{self.CONTAINER_PORT}/0"

    def start(self) -> None:
        """Create the container the first time, ``docker start`` it afterwards; return when it answers PING."""
        self._start("Redis", self.wait_ready)

    def wait_ready(self, timeout: float) -> None:
        """Readiness by protocol: PING answered on the published port; a container that exits fails now."""
        alive = _throttled(self._container.running, 0.5)
        wait_for_redis(self.url, timeout, alive=alive)

    def describe(self) -> dict[str, str]:
        return {
            "kind": "container",
            "image": self.image,
            "url": self.url,
            "container": self._container.name,
        }


# --------------------------------------------------------------------------
# Gateway
# --------------------------------------------------------------------------


class ImageGateway:
    """The gateway under test run from an image, published on a free loopback port.

    ``env`` is the caller's rendered gateway environment; inside the container
    HOST is always 0.0.0.0 and PORT is ``container_port`` (whatever ``env``
    said), because the harness reaches it through the published port. Give
    RABBITMQ_URL as ``RabbitContainer.gateway_amqp_url``: 127.0.0.1 inside a
    container is the container itself.
    """

    restartable = True

    def __init__(
        self,
        image: str,
        *,
        env: Mapping[str, str],
        network: ContainerNetwork | None = None,
        container_port: int = 3015,
        host_port: int | None = None,
        alias: str = "gateway",
        path: str = "/socket.io/",
        startup_timeout: float = 60.0,
        command: str | list[str] | None = None,
        stop_grace_s: float = 10.0,
    ) -> None:
        self.image = image
        self.stop_grace_s = stop_grace_s  # the stop bound: how long a SIGTERM may take (FAULT-7)
        self.network = network
        self.container_port = container_port
        self.host_port = host_port or free_port()
        self.alias = alias
        self.path = path
        self.startup_timeout = startup_timeout
        self.command = command
        self.volumes: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.with_env(env)

    def with_env(self, env: Mapping[str, str]) -> "ImageGateway":
        """Replace the environment (HOST and PORT are set for the container)."""
        self._before_start("with_env")
        self.env = {**{k: str(v) for k, v in env.items()}, "HOST": "0.0.0.0", "PORT": str(self.container_port)}
        return self

    def with_network(self, network: ContainerNetwork, alias: str = "gateway") -> "ImageGateway":
        self._before_start("with_network")
        self.network, self.alias = network, alias
        return self

    def with_host_port(self, port: int) -> "ImageGateway":
        self._before_start("with_host_port")
        self.host_port = port
        return self

    def with_startup_timeout(self, seconds: float) -> "ImageGateway":
        self.startup_timeout = seconds
        return self

    def with_volume(self, host_dir: str | os.PathLike[str], container_dir: str | None = None) -> "ImageGateway":
        """Bind ``host_dir`` read-write at ``container_dir`` (default: the same path).

        Replicas of one target share a folder this way (their ``{shared_dir}``); the same path
        inside and out lets one rendered environment name it for every replica."""
        self._before_start("with_volume")
        host = os.fspath(Path(host_dir).resolve())
        self.volumes[host] = container_dir or host
        return self

    def _before_start(self, what: str) -> None:
        if getattr(self, "_container", None) is not None and self._container.created:
            raise RuntimeError(f"{what}() after start(): the container exists already; call it before start()")

    _container: _ManagedContainer | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.host_port}"

    @property
    def running(self) -> bool:
        return self._container is not None and self._container.running()

    @property
    def returncode(self) -> int | None:
        """The exit code of a container that exited (also one removed after a failed start), else None."""
        if self._last is None or self._last.running():
            return None
        self._last.state()
        return self._last.last_exit_code

    _last: _ManagedContainer | None = None

    def start(self) -> None:
        """Create (first time) or start the container; return after an Engine.IO handshake answers."""
        if self._container is None:
            self._container = _ManagedContainer(
                self.image,
                role="gateway",
                network=self.network,
                aliases=(self.alias,),
                ports={self.container_port: self.host_port},
                env=self.env,
                command=self.command,
                volumes=self.volumes,
            )
        self._last = self._container
        _start_or_clean_up("gateway", self._container, lambda: self.wait_ready(self.startup_timeout))

    def wait_ready(self, timeout: float) -> None:
        """Readiness over the wire: an Engine.IO ``open`` packet on the published port."""
        assert self._container is not None
        alive: Callable[[], bool] = self._container.running
        wait_for_engineio(self.url, timeout, self.path, alive=_throttled(alive, 0.5))

    last_stop: StopResult | None = None

    def stop(self, grace_s: float | None = None) -> StopResult | None:
        """``docker stop -t``: SIGTERM, then SIGKILL after ``grace_s`` s (default: the stop bound
        plus the margin, rounded up to whole seconds as Docker takes them); the container stays.

        Returns how it went (None if it was not running). Docker kills exactly at the timeout, so
        an exit code of 137 (128 + SIGKILL) at or past it is taken as the harness's SIGKILL."""
        if self._container is None or not self._container.running():
            return None
        timeout = math.ceil(self.stop_grace_s + STOP_MARGIN_S if grace_s is None else grace_s)
        started = time.monotonic()
        self._container.stop(timeout=timeout)
        elapsed = time.monotonic() - started
        self._container.state()
        code = self._container.last_exit_code
        self.last_stop = StopResult(waited_s=timeout, elapsed_s=elapsed,
                                    escalated=code == 137 and elapsed >= timeout, returncode=code)
        return self.last_stop

    def kill(self) -> None:
        if self._container is not None:
            self._container.kill()

    def restart(self, *, hard: bool = False, grace_s: float | None = None) -> None:
        """Stop (or kill) and start the same container: same URL, same files inside."""
        self.kill() if hard else self.stop(grace_s)
        self.start()

    def logs(self) -> str:
        return self._container.logs() if self._container is not None else ""

    def log_size(self) -> int | None:
        """Bytes ``docker logs`` holds for the container so far: an offset for ``log_bytes``."""
        return len(self._container.raw_logs()) if self._container is not None else None

    def log_bytes(self, start: int, end: int | None = None) -> bytes:
        data = self._container.raw_logs() if self._container is not None else b""
        return data[start:end]

    def close(self) -> None:
        """Remove the container."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def describe(self) -> dict[str, str]:
        version = ""
        if self._container is not None and self._container.created:
            version = self._container.image_id()
        return {
            "kind": "container",
            "image": self.image,
            "url": self.url,
            "version": version,
            "container": self._container.name if self._container is not None else "",
        }

    def __enter__(self) -> "ImageGateway":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _throttled(check: Callable[[], bool], interval: float) -> Callable[[], bool]:
    """``check`` called at most every ``interval`` s (a docker inspect per 50 ms probe is wasteful)."""
    state: dict[str, Any] = {"at": 0.0, "value": True}

    def wrapped() -> bool:
        now = time.monotonic()
        if now - state["at"] >= interval:
            state["at"], state["value"] = now, check()
        return bool(state["value"])

    return wrapped
