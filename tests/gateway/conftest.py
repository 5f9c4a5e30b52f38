"""Fixtures for the gateway's tests: one private RabbitMQ node per session and
real ``python -m realtime_conformance.gateway`` processes. Helpers live in gwkit.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from realtime_conformance.harness.providers.broker import PrivateRabbitNode

from gwkit import GatewayProcess, PrivateRedis


@pytest.fixture(scope="session")
def rabbit() -> Iterator[PrivateRabbitNode]:
    node = PrivateRabbitNode()
    node.start()
    try:
        yield node
    finally:
        node.close()


@pytest.fixture(scope="session")
def gateway_factory(rabbit: PrivateRabbitNode) -> Iterator[Any]:
    """Start extra gateways (each stopped at session end if the test did not)."""
    started: list[GatewayProcess] = []
    root = Path(tempfile.mkdtemp(prefix="gwtest-"))

    def make(*, start: bool = True, wait_broker: bool = True, workdir: Path | None = None,
             **env: str) -> GatewayProcess:
        wd = workdir or Path(tempfile.mkdtemp(dir=root))
        gw = GatewayProcess(rabbit.amqp_url, wd, **env)
        started.append(gw)
        if start:
            gw.start(wait_broker=wait_broker)
        return gw

    yield make
    for gw in started:
        gw.stop(timeout=5)


@pytest.fixture(scope="session")
def gateway(gateway_factory: Any) -> GatewayProcess:
    """The gateway most tests share; each test uses its own tenant ids."""
    return gateway_factory()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[PrivateRedis]:
    """A private redis-server for the cluster tests (started only when one asks for it)."""
    server = PrivateRedis(Path(tempfile.mkdtemp(prefix="gwredis-")))
    server.start()
    try:
        yield server
    finally:
        server.stop()
