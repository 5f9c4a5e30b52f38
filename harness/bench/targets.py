"""The gateways a bench run compares, each started on one shared broker, each in a vhost of its own.

The first target is the run's own configuration (command line, environment, ini); a second one
(``--bench-compare``) is read from its own ini file alone, as if ``realtime-conformance`` ran in
its folder, so each gateway gets the environment its config names. Same broker, same machine:
only the gateway differs between the two columns of the report.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import shlex
import shutil
import tempfile
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator
from urllib.parse import urlsplit

from realtime_conformance.harness import settings as _settings
from realtime_conformance.harness.providers.broker import Broker, url_with_vhost, user_of
from realtime_conformance.harness.providers.target import (
    BrokerView, _dispose, gateway_network, make_broker, make_gateway, make_redis, redis_url_for, wait_for_consumer)
from realtime_conformance.harness.settings import Settings
from realtime_conformance.harness.wire.tokens import TokenFactory


class IniOnlyConfig:
    """Enough of ``pytest.Config`` for ``settings.resolve`` to read one ini file and nothing else."""

    def __init__(self, path: Path) -> None:
        self.inipath = path
        self.rootpath = path.parent
        self.invocation_params = SimpleNamespace(dir=path.parent)
        self._values = read_ini(path)

    def getoption(self, name: str, default: Any = None) -> Any:
        return default  # the first target's flags are not the second's

    def getini(self, name: str) -> Any:
        value = self._values.get(name)
        opt = _settings.BY_NAME.get(name)
        if value is None or opt is None:
            return None
        if opt.kind == "env":
            return [line.strip() for line in str(value).splitlines() if line.strip()]
        return value


def read_ini(path: Path) -> dict[str, Any]:
    """The pytest section of an ini-style file (pytest.ini, tox.ini, setup.cfg) or pyproject.toml."""
    if path.name == "pyproject.toml":
        options = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("pytest", {})
        return {k: ("\n".join(v) if isinstance(v, list) else v) for k, v in options.get("ini_options", {}).items()}
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    for section in ("pytest", "tool:pytest"):
        if parser.has_section(section):
            return dict(parser.items(section))
    raise ValueError(f"{path} has no [pytest] section: is it the target's pytest.ini?")


def settings_from_ini(path: Path) -> Settings:
    """The harness settings a ``realtime-conformance`` run in the ini's folder would use (no RTC_ env)."""
    return _settings.resolve(IniOnlyConfig(path), environ={})  # type: ignore[arg-type]


def default_name(settings: Settings) -> str:
    """'reference' for the reference gateway, else the program of its command, or its URL's host;
    ' x2' and so on when it runs as several instances."""
    times = f" x{settings.gateway_replicas}" if settings.gateway_replicas > 1 else ""
    if settings.reference_target:
        return "reference" + times
    if settings.gateway_cmd:
        return Path(shlex.split(settings.gateway_cmd)[0]).name + times
    if settings.gateway_url:
        return urlsplit(settings.gateway_url).netloc + times
    return str(settings.gateway_image) + times


@dataclass
class BenchTarget:
    """One started gateway as a step sees it."""

    name: str
    settings: Settings
    url: str
    amqp_url: str
    queue: str
    tokens: TokenFactory
    pid: int | None
    gateway: Any
    broker_pid: int | None = None  # the broker's process, when the harness started it (shared by the targets)
    urls: tuple[str, ...] = ()  # every instance, when the target runs as several (--gateway-replicas)
    pids: tuple[int | None, ...] = ()

    def __post_init__(self) -> None:
        self.urls = self.urls or (self.url,)
        self.pids = self.pids or (self.pid,)

    @property
    def socketio_path(self) -> str:
        return self.settings.socketio_path

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "kind": self.settings.target_kind, "url": self.url, "queue": self.queue,
               "instances": len(self.urls)}
        if len(self.urls) > 1:
            out["urls"] = list(self.urls)
        out.update({k: v for k, v in self.gateway.describe().items() if k in ("command",)})
        if self.settings.target_kind == "process":
            out["cwd"] = self.settings.gateway_cwd
        return self.settings.redactor.value(out)


@contextlib.contextmanager
def started(named: list[tuple[str, Settings]]) -> Iterator[list[BenchTarget]]:
    """Start one broker (the first target's kind) and every target on it; stop all of it after.

    A target with ``gateway_replicas`` N > 1 runs as N instances on a Redis of its own (as in a
    conformance run): the first alone, so it declares the queue its way, then the others."""
    workdir = Path(tempfile.mkdtemp(prefix="rtc-bench-"))
    broker: Broker | None = None
    gateways: list[Any] = []
    services: list[Any] = []
    try:
        broker = make_broker(named[0][1])
        broker.start()
        targets = []
        for i, (name, settings) in enumerate(named):
            view: Any = broker
            queue = settings.queue
            if i > 0:  # its own vhost (its queue keeps its configured name), else its own queue name
                vhost = f"rtc-bench-{uuid.uuid4().hex[:6]}"
                add = getattr(broker, "add_vhost", None)
                if add is not None and add(vhost, user_of(broker.amqp_url)):
                    view = BrokerView(broker, url_with_vhost(broker.amqp_url, vhost),
                                      url_with_vhost(getattr(broker, "gateway_amqp_url", broker.amqp_url), vhost))
                else:
                    queue = f"{settings.queue}.bench-{i}"
            redis = None
            if settings.gives_redis:  # a cluster's, or one --redis chose for a lone instance
                redis = make_redis(settings, network=getattr(broker, "network", None))
                services.append(redis)
                redis.start()
            shared = workdir / f"target-{i}-shared"
            instances = []
            for n in range(settings.gateway_replicas):
                gateway = make_gateway(settings, view, queue=queue, workdir=workdir / f"target-{i}-{n + 1}",
                                       name=f"gateway-{i}" + (f"-{n + 1}" if n else ""),
                                       shared_dir=shared if settings.cluster else None,
                                       redis_url=redis_url_for(settings, redis), replica=n,
                                       network=gateway_network(broker, redis))
                gateways.append(gateway)
                gateway.start()
                instances.append(gateway)
                if n == 0:  # the first declares the queue before any other instance could
                    asyncio.run(wait_for_consumer(view.amqp_url, queue, settings.gateway_startup_timeout))
            tokens = TokenFactory(settings.jwt_secret, settings.jwt_algorithm, settings.tenant_claim,
                                  dict(settings.extra_claims))
            server = getattr(broker, "_server", None)  # a private node's rabbitmq-server (beam runs under it)
            first = instances[0]
            targets.append(BenchTarget(name, settings, first.url, view.amqp_url, queue, tokens,
                                       getattr(first, "pid", None), first, getattr(server, "pid", None),
                                       urls=tuple(g.url for g in instances),
                                       pids=tuple(getattr(g, "pid", None) for g in instances)))
        yield targets
    finally:
        for gateway in gateways:
            with contextlib.suppress(Exception):
                _dispose(gateway)
        for service in services:
            with contextlib.suppress(Exception):
                getattr(service, "close", service.stop)()
        if broker is not None:
            with contextlib.suppress(Exception):
                getattr(broker, "close", broker.stop)()
        shutil.rmtree(workdir, ignore_errors=True)
