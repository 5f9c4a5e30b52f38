"""The system under test for one run: a broker, a gateway, and how to reach both.

Chooses the providers from the settings, starts them, and declares the target
ready only when it answers over the wire: an Engine.IO handshake, and a
consumer registered on the queue. Fault suites get dedicated gateway instances
(own queue, own read model) so killing one never disturbs the other suites.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import itertools
import os
import platform
import shutil
import tempfile
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest

from realtime_conformance.harness.judging.failures import UnknownEvidence
from realtime_conformance.harness.providers.broker import (
    RABBITMQ_SERVER, Broker, ExternalBroker, PrivateRabbitNode, url_with_vhost, user_of, vhost_of)
from realtime_conformance.harness.providers.gateway import (
    CommandGateway, Gateway, UrlGateway, engineio_open, quick_grace, websocket_open)
from realtime_conformance.harness.providers.ports import LOOPBACK, free_port
from realtime_conformance.harness.providers.vhosts import VhostPool
from realtime_conformance.harness.providers.redis_server import ExternalRedis, PrivateRedis, Redis
from realtime_conformance.harness.redaction import strip_terminal_codes
from realtime_conformance.harness.wire.proxy import FaultProxy
from realtime_conformance.harness.wire.idle import IdleWatch
from realtime_conformance.harness.wire.silent import SilentWatch
from realtime_conformance.harness.wire.publisher import Publisher
from realtime_conformance.harness.wire.scenario import Scenario
from realtime_conformance.harness.settings import NO_REDIS, Settings
from realtime_conformance.harness.wire.tokens import TokenFactory

_INSTANCES = itertools.count(1)
VHOST_STOCK = 2  # vhosts kept ready ahead of the dedicated gateways that take them (see providers/vhosts.py)


def make_broker(settings: Settings) -> Broker:
    """The broker the settings ask for; ``auto`` prefers Docker, then a private node."""
    kind = settings.broker
    if kind == "auto":
        from realtime_conformance.harness.providers import containers as _containers
        if _containers.docker_available():
            kind = "container"
        elif RABBITMQ_SERVER.exists():
            kind = "process"
        else:
            raise pytest.UsageError(
                "--broker auto found neither a Docker engine nor rabbitmq-server: install one "
                "(apt-get install rabbitmq-server, or start Docker), or give --broker external --amqp-url URL"
            )
    if kind == "external":
        assert settings.amqp_url
        return ExternalBroker(settings.amqp_url)
    if kind == "process":
        return PrivateRabbitNode()
    from realtime_conformance.harness.providers import containers as _containers
    return _containers.RabbitContainer(settings.rabbitmq_image)


def make_redis(settings: Settings, network: Any = None) -> Redis:
    """The Redis a cluster of the configured target shares, as ``--redis`` says (auto is resolved
    by then). A container joins ``network`` (the broker's), so gateway containers reach it by alias.

    On a shared network every Redis gets an alias of its own: the main cluster's and a dedicated
    cluster's Redis run side by side there, and one alias for both would resolve to either."""
    kind = settings.redis
    if kind == "none":  # a cluster asked for in a one-instance run: what auto would give a cluster
        kind = "container" if settings.target_kind == "image" else "process"
    if kind == "external":
        assert settings.redis_url
        return ExternalRedis(settings.redis_url)
    if kind == "container":
        from realtime_conformance.harness.providers import containers as _containers
        alias = f"redis-{uuid.uuid4().hex[:8]}" if network is not None else "redis"
        return _containers.RedisContainer(settings.redis_image, network=network, alias=alias)
    return PrivateRedis()


def gateway_network(broker: Any, redis: Any = None) -> Any:
    """The container network gateway containers join: the broker's, else the Redis container's."""
    return getattr(broker, "network", None) or getattr(redis, "network", None)


def redis_url_for(settings: Settings, redis: Redis | None) -> str:
    """The Redis URL as the gateways reach it: a container's alias for image targets, else the harness's URL."""
    if redis is None:
        return ""
    if settings.target_kind == "image":
        return getattr(redis, "gateway_url", redis.url)
    return redis.url


def gateway_environment(settings: Settings, broker: Broker, *, port: int, queue: str, workdir: Path,
                        host: str = LOOPBACK, shared_dir: Path | None = None, redis_url: str = "",
                        replica: int = 1) -> dict[str, str]:
    """The settings' env template, filled in for one gateway instance.

    ``shared_dir`` is the folder every replica of this target shares (the instance's own
    folder when it runs alone); ``redis_url`` is empty unless the target runs as several."""
    fields = {
        "host": host,
        "port": str(port),
        # A containerised gateway reaches the broker by its network alias; a process gateway on loopback.
        "amqp_url": getattr(broker, "gateway_amqp_url", broker.amqp_url) if settings.target_kind == "image"
        else broker.amqp_url,
        "jwt_secret": settings.jwt_secret,
        "jwt_algorithm": settings.jwt_algorithm,
        "tenant_claim": settings.tenant_claim,
        # The browser checks' page origin too, when they run: the page is the harness's, not the user's list.
        "allowed_origins": ",".join(dict.fromkeys((*settings.allowed_origins, *settings.page_origins))),
        "queue": queue,
        "workdir": str(workdir),
        "shared_dir": str(shared_dir or workdir),
        "redis_url": redis_url,
        "replica": str(replica),
    }
    return {key: template.format(**fields) for key, template in settings.gateway_env.items()}


def make_gateway(settings: Settings, broker: Broker, *, queue: str, workdir: Path, name: str,
                 shared_dir: Path | None = None, redis_url: str = "", replica: int = 0,
                 network: Any = None) -> Gateway:
    """A gateway instance of the configured target kind, consuming ``queue``; ``replica`` picks
    which of a URL target's URLs it is.

    An image gateway gets ``shared_dir`` bind-mounted at the same path (so ``{shared_dir}`` names
    one folder for every replica) and joins ``network`` (default: the broker's)."""
    if settings.target_kind == "url":
        assert settings.gateway_url
        urls = settings.gateway_urls or (settings.gateway_url,)
        return UrlGateway(urls[replica % len(urls)], path=settings.socketio_path)
    workdir.mkdir(parents=True, exist_ok=True)
    if shared_dir is not None:
        shared_dir.mkdir(parents=True, exist_ok=True)
    if settings.target_kind == "image":
        from realtime_conformance.harness.providers import containers as _containers
        env = gateway_environment(settings, broker, port=3015, queue=queue, workdir=Path("/tmp"), host="0.0.0.0",
                                  shared_dir=shared_dir.resolve() if shared_dir is not None else Path("/tmp"),
                                  redis_url=redis_url, replica=replica + 1)
        gateway = _containers.ImageGateway(settings.gateway_image, env=env,
                                           network=network or getattr(broker, "network", None),
                                           startup_timeout=settings.gateway_startup_timeout,
                                           path=settings.socketio_path, stop_grace_s=settings.stop_grace_s)
        if shared_dir is not None:
            # A container may run as another user than the harness: let every replica write here.
            shared_dir.chmod(0o777)
            gateway.with_volume(shared_dir)
        return gateway
    port = free_port()
    env = {**os.environ, **gateway_environment(settings, broker, port=port, queue=queue, workdir=workdir,
                                               shared_dir=shared_dir, redis_url=redis_url, replica=replica + 1)}
    return CommandGateway(settings.command, url=f"http://{LOOPBACK}:{port}", env=env, cwd=Path(settings.gateway_cwd),
                          log_path=workdir / f"{name}.log", path=settings.socketio_path,
                          startup_timeout=settings.gateway_startup_timeout, stop_grace_s=settings.stop_grace_s)


class WrongQueue(TimeoutError):
    """The gateway consumes some other queue than the one it was configured for."""

    def __init__(self, queue: str, vhost: str, consumed: list[str]) -> None:
        self.queue, self.vhost, self.consumed = queue, vhost, consumed
        super().__init__(f"the gateway consumes {', '.join(repr(q) for q in consumed)} in vhost {vhost!r}, not the "
                         f"configured queue {queue!r}: it ignores the queue name it is given (DLV-8)")


# How long a gateway may answer handshakes without a consumer on its queue before the
# harness looks for a consumer elsewhere in the vhost (a queue name it ignores).
WRONG_QUEUE_AFTER_S = 3.0


async def wait_for_consumer(amqp_url: str, queue: str, timeout: float, *,
                            lister: "Callable[[], dict[str, dict] | None] | None" = None) -> None:
    """Block until ``queue`` has a consumer (the gateway is listening), or raise TimeoutError.

    ``lister`` lists the queues of a vhost only this gateway uses: when another queue there has
    a consumer, the gateway ignores its configured name, and that is said at once (WrongQueue)."""
    start = time.monotonic()
    deadline = start + timeout
    looking: asyncio.Task | None = None  # the listing runs beside the polling, never delays it
    async with Publisher(amqp_url, queue, declare=False) as pub:  # the gateway declares its queue, its way
        try:
            while time.monotonic() < deadline:
                state = await pub.queue_state()
                if state and state[1] >= 1:
                    return
                if lister is not None and looking is None and time.monotonic() - start > WRONG_QUEUE_AFTER_S:
                    looking = asyncio.create_task(asyncio.to_thread(lister))
                if looking is not None and looking.done():
                    listed = looking.result() or {}
                    elsewhere = sorted(name for name, info in listed.items() if info["consumers"] and name != queue)
                    if elsewhere:
                        raise WrongQueue(queue, vhost_of(amqp_url), elsewhere)
                    looking = None if time.monotonic() - start < 3 * WRONG_QUEUE_AFTER_S else looking
                await asyncio.sleep(0.1)
        finally:
            if looking is not None and not looking.done():
                looking.cancel()
    raise TimeoutError(f"no consumer appeared on queue {queue!r} within {timeout:.0f} s: "
                       "is the gateway configured for this queue name and broker?")


class NotConsumingAfterRestart(UnknownEvidence):
    """A restarted gateway never consumed again: UNKNOWN for the check that restarted it, unless
    that check is RECON-1, which judges exactly this."""


class BrokerView:
    """A broker as one gateway sees it: the same broker under another URL (its own vhost, or
    through a FaultProxy). Everything else (restart, kill, listing) is the broker's."""

    def __init__(self, broker: Any, amqp_url: str, gateway_amqp_url: str | None = None) -> None:
        self.broker = broker
        self.amqp_url = amqp_url
        self.gateway_amqp_url = gateway_amqp_url or amqp_url

    def __getattr__(self, name: str) -> Any:
        return getattr(self.broker, name)


class Instance:
    """One running gateway consuming one queue; what scenarios connect to."""

    broker_link: "FaultProxy | None" = None
    index = 0  # which replica of its target (0: the first)

    def __init__(self, target: "Target", gateway: Gateway, queue: str, broker: Broker, *,
                 private_vhost: bool = False) -> None:
        self.target = target
        self.gateway = gateway
        self.queue = queue
        self.broker = broker  # as the harness reaches it (its amqp_url names this instance's vhost)
        self.private_vhost = private_vhost  # nobody else uses the vhost: any consumer there is this gateway

    @property
    def vhost(self) -> str:
        return vhost_of(self.amqp_url)

    def _lister(self) -> "Callable[[], dict[str, dict] | None] | None":
        queues = getattr(self.broker, "queues", None)
        return (lambda: queues(self.vhost)) if self.private_vhost and queues is not None else None

    async def queue_info(self) -> dict[str, Any] | None:
        """The queue as the broker describes it (durable, arguments, consumers, counts), if it can."""
        queues = getattr(self.broker, "queues", None)
        listed = await asyncio.to_thread(queues, self.vhost) if queues is not None else None
        return None if listed is None else listed.get(self.queue, {})

    async def queue_counts(self, publisher: Publisher) -> dict[str, int | None] | None:
        """Ready messages (passive declare) and, where the broker lets us, unacknowledged ones."""
        state = await publisher.queue_state(self.queue)
        if state is None:
            return None
        counts: dict[str, int | None] = {"ready": state[0], "consumers": state[1], "unacked": None}
        reader = getattr(self.broker, "queue_counts", None)
        if reader is not None:
            exact = await asyncio.to_thread(reader, self.queue, self.vhost)
            if exact is not None:
                counts.update(ready=exact["ready"], unacked=exact["unacked"])
        return counts

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def amqp_url(self) -> str:
        return self.broker.amqp_url

    def scenario(self, control_types: tuple[str, ...] | None = None) -> Scenario:
        return Scenario(settings=self.target.settings, url=self.url, amqp_url=self.amqp_url,
                        queue=self.queue, tokens=self.target.tokens,
                        control_types=self.target.control_types if control_types is None else control_types,
                        control_note=self.target.profile_note)

    async def wait_ready(self, timeout: float | None = None) -> None:
        await wait_for_consumer(self.amqp_url, self.queue, timeout or self.target.settings.gateway_startup_timeout,
                                lister=self._lister())

    async def stop(self) -> None:
        """SIGTERM with a short grace, then SIGKILL (``quick_grace``): for checks that need the gateway
        down, not a judgement of how it stops (FAULT-7's, which calls ``gateway.stop()`` with the bound)."""
        await asyncio.to_thread(self.gateway.stop, quick_grace(self.target.settings.stop_grace_s))

    async def restart(self, *, hard: bool) -> None:
        """Stop (SIGTERM, or SIGKILL if ``hard``) and start again; ready when consuming.

        A SIGTERM gets a short grace (``quick_grace``), not the whole stop bound: a restart judges
        what comes after it, and how long stopping takes is FAULT-7's alone. A gateway that does
        not consume again is RECON-1's defect: other checks are UNKNOWN, blocked by it."""
        grace = quick_grace(self.target.settings.stop_grace_s)
        await asyncio.to_thread(self.gateway.restart, hard=hard, grace_s=grace)
        timeout = self.target.settings.gateway_startup_timeout
        try:
            await self.wait_ready(timeout)
        except TimeoutError as exc:
            raise NotConsumingAfterRestart(
                f"blocked by RECON-1: no consumer on {self.queue} within {timeout:.0f} s of a "
                f"{'SIGKILL' if hard else 'SIGTERM'} restart ({exc})") from None

    def engineio_options(self) -> dict[str, Any]:
        return engineio_open(self.url, self.target.settings.socketio_path) or {}

    def websocket_handshake(self) -> dict[str, Any] | None:
        """The Engine.IO ``open`` packet of a handshake made directly over websocket, or None."""
        return websocket_open(self.url, self.target.settings.socketio_path, timeout=3.0)


class Cluster:
    """Several instances of one gateway: one queue, one Redis, one shared folder.

    Scenarios from ``scenario()`` spread their clients over the instances, each reached
    directly (as a load balancer with sticky sessions would keep each client on one).
    ``balancer(home)`` is the way back in when an instance dies: a proxy that sends a client
    to its home instance while it lives and to the next live one otherwise.
    """

    WARM_UP_TRIES, WARM_UP_WAIT_S = 3, 1.5

    def __init__(self, target: "Target", instances: "list[Instance]", redis: Redis | None) -> None:
        self.target = target
        self.instances = instances
        self.redis = redis
        self.warm: dict[str, Any] = {}

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(i.url for i in self.instances)

    def scenario(self, control_types: tuple[str, ...] | None = None) -> Scenario:
        first = self.instances[0]
        return Scenario(settings=self.target.settings, url=first.url, amqp_url=first.amqp_url, queue=first.queue,
                        tokens=self.target.tokens, urls=self.urls, spread=True,
                        control_types=self.target.control_types if control_types is None else control_types,
                        control_note=self.target.profile_note)

    async def balancer(self, home: int) -> FaultProxy:
        """A started proxy whose connections go to instance ``home`` while it accepts, else the next."""
        order = self.instances[home:] + self.instances[:home]
        targets = [(urlsplit(i.url).hostname or LOOPBACK, urlsplit(i.url).port or 80) for i in order]
        return await FaultProxy.balancing(targets, policy="failover").start()

    def instance_at(self, address: tuple[str, int]) -> int | None:
        """Which instance listens at ``address`` (a balancer's target)."""
        for n, instance in enumerate(self.instances):
            parts = urlsplit(instance.url)
            if (parts.hostname, parts.port) == address:
                return n
        return None

    async def warm_up(self) -> bool:
        """Wait (bounded) until an event reaches a client on every instance.

        An instance answers handshakes before its adapter has subscribed; this keeps that start-up
        moment out of the checks. A gateway that never delivers across instances only costs the
        bound here: the cluster checks judge it."""
        if not self.target.control_types or len(self.instances) < 2:
            return True
        async with self.scenario() as sc:
            tenant = sc.tenant("warm")
            try:
                clients = [c for n in range(len(self.instances)) for c in await sc.connect(tenant, instance=n)]
            except Exception as exc:  # judged by the checks, not here
                self.warm = {"reached_every_instance": False, "error": str(exc)[:200]}
                return False
            for attempt in range(1, self.WARM_UP_TRIES + 1):
                published = await sc.publish_control(tenant, attempt)
                missing = await sc.wait_delivered(clients, [published], self.WARM_UP_WAIT_S)
                if not missing:
                    self.warm = {"reached_every_instance": True, "events_needed": attempt}
                    return True
            self.warm = {"reached_every_instance": False, "events_tried": self.WARM_UP_TRIES}
            return False


class Target:
    """Broker plus the main gateway instances for a whole run (one, or a cluster)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokens = TokenFactory(settings.jwt_secret, settings.jwt_algorithm, settings.tenant_claim,
                                   dict(settings.extra_claims))
        self.workdir = Path(tempfile.mkdtemp(prefix="rtc-run-"))
        self.broker: Broker | None = None
        self.main: Instance | None = None
        self.instances: list[Instance] = []  # the main instance first
        self.cluster: Cluster | None = None  # when the target runs as several instances
        self.redis: Redis | None = None
        self._extra_redis: list[Redis] = []
        self._extra: list[Gateway] = []
        self._extra_brokers: list[Broker] = []
        self.engineio: dict[str, Any] = {}
        self.started_at = time.time()
        self.delivery_profile: dict[str, str] = {}
        self.profile_note = ""
        self.control_types: tuple[str, ...] = ()
        self.isolation_note = ""
        self._vhost_pool: VhostPool | None = None
        self._spare_broker: "concurrent.futures.Future[Broker] | None" = None
        # Log tails kept past close(): the report is written after the work dir is gone.
        self._closed_logs: dict[str, str] | None = None
        self._failed_logs: dict[str, str] = {}
        self.idle_watch: IdleWatch | None = None
        self.silent_watch: SilentWatch | None = None

    def _all_main(self) -> "list[Instance]":
        return self.instances or ([self.main] if self.main is not None else [])

    def prepare_spare_broker(self) -> None:
        """Start, in the background, the broker of its own that a broker-restart check will ask for,
        so that check does not wait for one to boot (about 6 s)."""
        if self._spare_broker is not None or self.settings.broker == "external":
            return
        broker = make_broker(self.settings)
        self._extra_brokers.append(broker)  # closed with the rest, started or not

        def boot() -> Broker:
            broker.start()
            return broker
        starter = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._spare_broker = starter.submit(boot)
        starter.shutdown(wait=False)

    def start_idle_watch(self, window_s: float) -> None:
        """MET-3's idle window, started now on a dedicated instance so it runs beside the other checks."""
        if self.idle_watch is None:
            self.idle_watch = IdleWatch(self, window_s).start()

    def start_silent_watch(self, bound_s: float) -> None:
        """ROB-6's silent clients, started now on a dedicated instance so their wait runs beside the other checks."""
        if self.silent_watch is None:
            self.silent_watch = SilentWatch(self, bound_s, self.settings.socketio_path).start()

    def start(self) -> "Target":
        self.broker = make_broker(self.settings)
        self.broker.start()
        # Vhosts for dedicated gateways: the first made while the main gateway starts, the rest as they are taken.
        add = getattr(self.broker, "add_vhosts", None)
        if add is not None:
            self._vhost_pool = VhostPool(add, user_of(self.broker.amqp_url), ahead=VHOST_STOCK)
        replicas = self.settings.gateway_replicas
        if self.settings.gives_redis:  # a cluster's, or one chosen with --redis for a lone instance
            self.redis = make_redis(self.settings, network=getattr(self.broker, "network", None))
            self.redis.start()
        # One folder every replica shares (bind-mounted into containers); a lone instance uses its own.
        shared = self.workdir / "shared" if self.settings.cluster else None
        for n in range(replicas):
            workdir = self.workdir / ("main" if n == 0 else f"main-{n + 1}")
            gateway = make_gateway(self.settings, self.broker, queue=self.settings.queue, workdir=workdir,
                                   name="gateway" if n == 0 else f"gateway-{n + 1}", shared_dir=shared,
                                   redis_url=redis_url_for(self.settings, self.redis), replica=n,
                                   network=gateway_network(self.broker, self.redis))
            # A broker the harness started is this run's alone: a consumer on another queue is this gateway's.
            instance = Instance(self, gateway, self.settings.queue, self.broker,
                                private_vhost=self.settings.broker != "external")
            instance.index = n
            self.instances.append(instance)  # before start: close() stops it whatever happens
            self.main = self.instances[0]
            gateway.start()
            if n == 0:
                # The first declares the queue its way before any other instance, or the harness, could.
                asyncio.run(self.main.wait_ready())
        self.engineio = self.main.engineio_options()  # read now: the report is written after the gateway stops
        self.learn_delivery_profile()
        if self.settings.cluster:
            self.cluster = Cluster(self, self.instances, self.redis)
            asyncio.run(self.cluster.warm_up())
        return self

    async def _vhost(self, broker: Any, label: str) -> str | None:
        """A vhost only this dedicated gateway uses: from the pool, else made now; None if impossible."""
        if broker is self.broker and self._vhost_pool is not None:
            vhost = await asyncio.to_thread(self._vhost_pool.take)
            if vhost is not None:
                return vhost
        add = getattr(broker, "add_vhost", None)
        name = f"rtc-{label}-{uuid.uuid4().hex[:6]}"
        return name if add is not None and await asyncio.to_thread(add, name, user_of(broker.amqp_url)) else None

    def learn_delivery_profile(self) -> None:
        """Which event types reach a fresh client, and in what form: the checks' control types."""
        from realtime_conformance.harness.judging import preflight

        assert self.main is not None
        self.delivery_profile, self.profile_note = asyncio.run(preflight.delivery_profile(self.main))
        self.control_types = preflight.control_types(self.delivery_profile)

    def close(self) -> None:
        """Stop everything and remove the work dir; the log tails are read first and kept for ``logs()``."""
        if self.idle_watch is not None:
            self.idle_watch.stop()  # its tabs close while their gateway is still up
        if self.silent_watch is not None:
            self.silent_watch.stop()  # its clients close while their gateway is still up
        if self._closed_logs is None:
            with contextlib.suppress(Exception):
                self._closed_logs = self._read_logs()
        if self._vhost_pool is not None:
            self._vhost_pool.close()  # a rabbitmqctl running finishes before its node goes
        if self._spare_broker is not None:  # a broker booting
            with contextlib.suppress(Exception):
                self._spare_broker.result(timeout=60)
        for gw in [*self._extra, *(i.gateway for i in self._all_main())]:
            with contextlib.suppress(Exception):
                _dispose(gw)
        for redis in [*self._extra_redis, *([self.redis] if self.redis else [])]:
            with contextlib.suppress(Exception):
                getattr(redis, "close", redis.stop)()
        for broker in [*self._extra_brokers, *([self.broker] if self.broker else [])]:
            with contextlib.suppress(Exception):
                close = getattr(broker, "close", broker.stop)
                close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def dedicated(self, label: str, *, own_broker: bool = False, broker_link: bool = False,
                        queue: str | None = None, broker_down: str | None = None) -> AsyncIterator[Instance]:
        """A fresh gateway instance for fault tests, isolated in a vhost of its own.

        It keeps the configured queue name (``queue`` gives another, for DLV-8), so gateways
        with a fixed name work too. ``own_broker`` gives it a broker of its own (to restart);
        ``broker_link`` puts a FaultProxy between it and the broker (``instance.broker_link``).
        ``broker_down`` starts it with that link down, ``"refused"`` (nothing listens) or
        ``"reset"`` (accepted, then closed at once), and yields it without waiting for a
        consumer: FAULT-6's set-up. Only process targets have the link; for the others, with
        ``own_broker``, the broker itself is killed before the gateway starts ("refused" only).
        A broker where no vhost can be made (an external one without its management API)
        falls back to isolating by a renamed queue, which a gateway with a fixed name ignores.
        """
        assert self.broker is not None
        broker: Any = self.broker
        if own_broker:
            spare, self._spare_broker = self._spare_broker, None
            if spare is not None:
                broker = await asyncio.wrap_future(spare)
            else:
                broker = make_broker(self.settings)
                self._extra_brokers.append(broker)
                await asyncio.to_thread(broker.start)
        n = next(_INSTANCES)
        vhost = None if own_broker else await self._vhost(broker, label)  # a broker of its own is isolation enough
        isolated = vhost is not None or own_broker
        if vhost is not None:
            broker = BrokerView(broker, url_with_vhost(broker.amqp_url, vhost),
                                url_with_vhost(getattr(broker, "gateway_amqp_url", broker.amqp_url), vhost))
        if isolated:
            queue = queue or self.settings.queue
        else:
            queue = queue or f"{self.settings.queue}.{label}-{n}"
            self.isolation_note = "dedicated gateways isolated by queue name (no vhost could be made on this broker)"
        link: FaultProxy | None = None
        gateway_broker: Any = broker
        if broker_link and self.settings.target_kind == "process":
            # Containers cannot reach a loopback proxy; their tests run without the hold.
            parts = urlsplit(broker.amqp_url)
            link = await FaultProxy(parts.hostname or LOOPBACK, parts.port or 5672, amqp=True).start()
            if broker_down == "refused":
                link.refuse()
            elif broker_down == "reset":
                link.cut()
            elif broker_down is not None:
                raise ValueError(f"broker_down={broker_down!r}: use 'refused' or 'reset'")
            gateway_broker = BrokerView(broker, parts._replace(
                netloc=f"{parts.username}:{parts.password}@{LOOPBACK}:{link.port}").geturl())
        if broker_down is not None and link is None:
            if not own_broker or broker_down != "refused":
                raise ValueError("broker_down without a broker link needs own_broker=True and 'refused'")
            await asyncio.to_thread(getattr(broker, "broker", broker).kill)
        redis: Redis | None = None
        if self.settings.redis_chosen and self.settings.gives_redis:
            # --redis chose one: a dedicated instance gets its own (the external one is shared).
            redis = make_redis(self.settings, network=getattr(broker, "network", None))  # where its gateway runs
            self._extra_redis.append(redis)
        gateway = make_gateway(self.settings, gateway_broker, queue=queue, workdir=self.workdir / f"{label}-{n}",
                               name=f"gateway-{label}-{n}", redis_url=redis_url_for(self.settings, redis),
                               network=gateway_network(broker, redis))
        self._extra.append(gateway)
        failed = True
        try:
            if redis is not None:
                await asyncio.to_thread(redis.start)
            await asyncio.to_thread(gateway.start)
            instance = Instance(self, gateway, queue, broker, private_vhost=isolated)
            instance.broker_link = link
            if broker_down is None:
                try:
                    await instance.wait_ready()
                except WrongQueue:
                    raise
                except TimeoutError as exc:
                    raise UnknownEvidence(f"blocked by DLV-8: a dedicated instance of the gateway had no consumer "
                                          f"on {queue} after it started ({exc})") from None
            try:
                yield instance
            except pytest.skip.Exception:
                failed = False  # N/A: nothing went wrong
                raise
            failed = False
        finally:
            if failed:  # the test failed inside, or the instance never got ready: keep its log tail
                with contextlib.suppress(Exception):
                    self._failed_logs[f"gateway {label}-{n}"] = gateway.logs()[-8000:]
            await asyncio.to_thread(_dispose, gateway)
            self._extra.remove(gateway)
            if link is not None:
                await link.close()
            if own_broker:
                real = getattr(broker, "broker", broker)
                await asyncio.to_thread(getattr(real, "close", real.stop))
                self._extra_brokers.remove(real)
            if redis is not None:
                with contextlib.suppress(Exception):  # a Redis that never started has nothing to stop
                    await asyncio.to_thread(getattr(redis, "close", redis.stop))
                self._extra_redis.remove(redis)

    @contextlib.asynccontextmanager
    async def dedicated_cluster(self, label: str, replicas: int | None = None, *,
                                broker_links: bool = False) -> AsyncIterator[Cluster]:
        """A fresh cluster of the configured size for checks that kill an instance: a vhost, a
        Redis (as --redis says: a process, a container, or the one --redis-url names) and a
        shared folder of its own. ``broker_links`` puts a FaultProxy between each instance and the
        broker (process targets; each instance's ``broker_link``), which shows what each instance consumed."""
        assert self.broker is not None
        replicas = replicas or self.settings.gateway_replicas
        n = next(_INSTANCES)
        broker: Any = self.broker
        started = time.perf_counter()
        timings: dict[str, float] = {}

        def lap(what: str) -> None:
            timings[what] = round(time.perf_counter() - started, 2)
        vhost = await self._vhost(broker, label)
        lap("vhost")
        if vhost is not None:
            broker = BrokerView(broker, url_with_vhost(broker.amqp_url, vhost),
                                url_with_vhost(getattr(broker, "gateway_amqp_url", broker.amqp_url), vhost))
            queue = self.settings.queue
        else:
            queue = f"{self.settings.queue}.{label}-{n}"
            self.isolation_note = "dedicated gateways isolated by queue name (no vhost could be made on this broker)"
        redis = make_redis(self.settings, network=getattr(self.broker, "network", None))
        self._extra_redis.append(redis)
        shared = self.workdir / f"{label}-{n}-shared"
        gateways: list[Gateway] = []
        links: list[FaultProxy | None] = []
        failed = True
        try:
            await asyncio.to_thread(redis.start)
            lap("redis")
            instances = []
            for k in range(replicas):
                gateway_broker: Any = broker
                link: FaultProxy | None = None
                if broker_links and self.settings.target_kind == "process":
                    parts = urlsplit(broker.amqp_url)
                    link = await FaultProxy(parts.hostname or LOOPBACK, parts.port or 5672, amqp=True).start()
                    gateway_broker = BrokerView(broker, parts._replace(
                        netloc=f"{parts.username}:{parts.password}@{LOOPBACK}:{link.port}").geturl())
                links.append(link)
                gateway = make_gateway(self.settings, gateway_broker, queue=queue, workdir=self.workdir / f"{label}-{n}-{k + 1}",
                                       name=f"gateway-{label}-{n}-{k + 1}", shared_dir=shared,
                                       redis_url=redis_url_for(self.settings, redis), replica=k,
                                       network=gateway_network(self.broker, redis))
                gateways.append(gateway)
                self._extra.append(gateway)
                await asyncio.to_thread(gateway.start)
                instance = Instance(self, gateway, queue, broker, private_vhost=vhost is not None)
                instance.index = k
                instance.broker_link = link
                instances.append(instance)
                lap(f"instance {k + 1} answers")
                if k == 0:
                    await instance.wait_ready()
                    lap("instance 1 consumes")
            cluster = Cluster(self, instances, redis)
            await cluster.warm_up()
            lap("warm")
            cluster.warm["started_s"] = timings
            try:
                yield cluster
            except pytest.skip.Exception:
                failed = False
                raise
            failed = False
        finally:
            for k, gateway in enumerate(gateways):
                if failed:
                    with contextlib.suppress(Exception):
                        self._failed_logs[f"gateway {label}-{n}-{k + 1}"] = gateway.logs()[-8000:]
                await asyncio.to_thread(_dispose, gateway)
                self._extra.remove(gateway)
            await asyncio.to_thread(getattr(redis, "close", redis.stop))
            self._extra_redis.remove(redis)
            for link in links:
                if link is not None:
                    await link.close()

    async def try_start(self, overrides: dict[str, str | None], *, timeout: float) -> dict[str, Any]:
        """Start one more gateway with some template values replaced (None removes the variable).

        ``overrides`` maps a placeholder such as ``{jwt_secret}`` to its replacement: every
        variable whose template uses it is changed, whatever the target calls it.
        Returns the outcome: "exited" (refused to start) or "served" (answered a handshake).
        """
        assert self.broker is not None
        env = dict(self.settings.gateway_env)
        for placeholder, value in overrides.items():
            for key, template in list(env.items()):
                if placeholder in template:
                    if value is None:
                        env.pop(key)
                    else:
                        env[key] = template.replace(placeholder, value)
        trial = dataclasses.replace(self.settings, gateway_env=env, gateway_startup_timeout=timeout)
        n = next(_INSTANCES)
        broker: Any = self.broker
        vhost = await self._vhost(broker, "trial")
        if vhost is not None:
            broker = BrokerView(broker, url_with_vhost(broker.amqp_url, vhost),
                                url_with_vhost(getattr(broker, "gateway_amqp_url", broker.amqp_url), vhost))
        lone_redis = self.redis if self.settings.redis_chosen else None  # short-lived: the main's will do
        gateway = make_gateway(trial, broker, queue=self.settings.queue, workdir=self.workdir / f"trial-{n}",
                               name=f"gateway-trial-{n}", redis_url=redis_url_for(self.settings, lone_redis),
                               network=gateway_network(self.broker, lone_redis))
        if isinstance(gateway, CommandGateway):
            # The variables removed from the template must not leak in from our own environment.
            for key in set(self.settings.gateway_env) - set(env):
                gateway._process.env.pop(key, None)  # type: ignore[union-attr]
        try:
            await asyncio.to_thread(gateway.start)
        except (RuntimeError, TimeoutError) as exc:
            await asyncio.to_thread(_dispose, gateway)
            return {"outcome": "exited", "returncode": getattr(gateway, "returncode", None), "log": str(exc)}
        log = gateway.logs()
        await asyncio.to_thread(_dispose, gateway)
        return {"outcome": "served", "returncode": None, "log": log}

    def logs(self) -> dict[str, str]:
        """Tails of the main gateway's and the broker's logs, and of dedicated gateways whose test failed.

        After ``close()`` these are the tails read just before the work dir was removed.
        """
        logs = self._closed_logs if self._closed_logs is not None else self._read_logs()
        return {**logs, **{k: v for k, v in self._failed_logs.items() if v}}

    def _read_logs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for n, instance in enumerate(self._all_main()):
            out["gateway" if n == 0 else f"gateway-{n + 1}"] = instance.gateway.logs()[-20000 if n == 0 else -8000:]
        log_path = getattr(self.broker, "log_path", None)
        if log_path is not None and Path(log_path).exists():
            out["broker"] = strip_terminal_codes(Path(log_path).read_text(errors="replace"))[-8000:]
        elif callable(getattr(self.broker, "logs", None)):
            with contextlib.suppress(Exception):
                out["broker"] = self.broker.logs()[-8000:]  # type: ignore[union-attr]
        return {k: v for k, v in out.items() if v}

    def describe(self) -> dict[str, Any]:
        packages = {}
        for name in ("pytest", "pytest-asyncio", "python-socketio", "python-engineio", "aio-pika", "hypothesis",
                     "PyJWT", "testcontainers"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                packages[name] = metadata.version(name)
        gateway = self.main.gateway.describe() if self.main else {}
        if self.engineio:
            gateway = {**gateway, "pingInterval_ms": self.engineio.get("pingInterval"),
                       "pingTimeout_ms": self.engineio.get("pingTimeout"),
                       "upgrades": self.engineio.get("upgrades"), "maxPayload": self.engineio.get("maxPayload")}
        return {
            "harness_version": _version(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "packages": packages,
            "gateway": gateway,
            "broker": self.broker.describe() if self.broker else {},
            "redis": self.redis.describe() if self.redis else {
                "kind": "none", "note": "a URL target's Redis is its own" if self.settings.target_kind == "url"
                else NO_REDIS},
            **({"replicas": len(self.instances), "instances": [i.url for i in self.instances],
                "cluster_warm_up": self.cluster.warm if self.cluster else None} if len(self.instances) > 1 else {}),
            "delivery_profile": self.delivery_profile,
            "control_types": list(self.control_types),
            **({"delivery_profile_note": self.profile_note} if self.profile_note else {}),
        }


def _dispose(gateway: Gateway) -> None:
    """Stop a gateway for good: containers are removed, processes stopped with a short grace
    (nothing is judged here, so a gateway that hangs on SIGTERM costs seconds, not the bound)."""
    close = getattr(gateway, "close", None)
    if close is not None:
        close()
    else:
        gateway.stop(quick_grace(getattr(gateway, "stop_grace_s", 10.0)))


def _version() -> str:
    try:
        return metadata.version("realtime-conformance")
    except metadata.PackageNotFoundError:
        return "0+unknown"
