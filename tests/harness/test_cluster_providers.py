"""The pieces a cluster run is made of, on real sockets: the private Redis, the balancing proxy,
the environment each replica gets, and how image replicas are wired (built, not started: the
containers themselves are tested in tests/containers)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from realtime_conformance.harness.providers.ports import LOOPBACK, free_port
from realtime_conformance.harness.providers.redis_server import ExternalRedis, PrivateRedis, redis_answers
from realtime_conformance.harness.providers.target import (gateway_environment, gateway_network, make_gateway, make_redis,
                                                           redis_url_for)
from realtime_conformance.harness.settings import DEFAULT_GATEWAY_ENV
from realtime_conformance.harness.wire.proxy import FaultProxy


def test_private_redis_answers_and_is_gone_after_close():
    redis = PrivateRedis()
    redis.start()
    try:
        assert redis.url.startswith(f"redis://{LOOPBACK}:")
        assert redis_answers(LOOPBACK, redis.port)
    finally:
        redis.close()
    assert not redis.running
    assert not redis_answers(LOOPBACK, redis.port)
    assert not redis.workdir.exists()


def test_external_redis_that_does_not_answer_is_a_timeout():
    with pytest.raises(TimeoutError, match="no Redis answered PING"):
        ExternalRedis(f"redis://{LOOPBACK}:{free_port()}/0").with_startup_timeout(0.3).start()


def test_a_missing_redis_server_names_the_fix():
    with pytest.raises(FileNotFoundError, match="apt-get install redis-server"):
        PrivateRedis().with_program("no-such-redis-server").start()


async def _named_server(name: bytes):
    async def answer(reader, writer):
        writer.write(name)
        await writer.drain()
        writer.close()
    return await asyncio.start_server(answer, LOOPBACK, 0)


async def _first_bytes(port: int) -> bytes:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        return await asyncio.wait_for(reader.read(1), 5)
    finally:
        writer.close()


async def test_balancer_round_robin_and_failover():
    a, b = await _named_server(b"a"), await _named_server(b"b")
    targets = [(LOOPBACK, s.sockets[0].getsockname()[1]) for s in (a, b)]
    async with FaultProxy.balancing(targets, policy="round-robin") as rr:
        assert [await _first_bytes(rr.port) for _ in range(4)] == [b"a", b"b", b"a", b"b"]
    async with FaultProxy.balancing(targets, policy="failover") as sticky:
        assert [await _first_bytes(sticky.port) for _ in range(2)] == [b"a", b"a"]
        a.close()
        await a.wait_closed()
        assert await _first_bytes(sticky.port) == b"b"  # the first is gone: the next takes over
        assert sticky.connections_by_target[targets[1]] == 1
    b.close()
    await b.wait_closed()


def test_balancing_needs_a_known_policy():
    with pytest.raises(ValueError, match="round-robin"):
        FaultProxy.balancing([(LOOPBACK, 1)], policy="random")


def _settings(env: dict[str, str]):
    return SimpleNamespace(gateway_env=env, target_kind="process", jwt_secret="s" * 32, jwt_algorithm="HS256",
                           tenant_claim="tenantId", allowed_origins=("http://localhost:3000",), page_origins=(), stop_grace_s=10.0)


def test_one_replica_gets_no_redis_and_its_own_folder_as_the_shared_one(tmp_path: Path):
    broker = SimpleNamespace(amqp_url="amqp://guest:guest@127.0.0.1:5672/")
    env = gateway_environment(_settings(dict(DEFAULT_GATEWAY_ENV)), broker, port=4000, queue="q", workdir=tmp_path)
    assert env["REDIS_URL"] == ""
    assert env["DATABASE_PATH"] == f"{tmp_path}/gateway.sqlite3"


def test_replicas_share_a_folder_and_a_redis(tmp_path: Path):
    broker = SimpleNamespace(amqp_url="amqp://guest:guest@127.0.0.1:5672/")
    settings = _settings({**DEFAULT_GATEWAY_ENV, "NODE": "{replica}", "OWN": "{workdir}"})
    envs = [gateway_environment(settings, broker, port=4000 + n, queue="q", workdir=tmp_path / f"i{n}",
                                shared_dir=tmp_path / "shared", redis_url="redis://127.0.0.1:7000/0", replica=n + 1)
            for n in range(2)]
    assert {e["DATABASE_PATH"] for e in envs} == {f"{tmp_path}/shared/gateway.sqlite3"}
    assert {e["REDIS_URL"] for e in envs} == {"redis://127.0.0.1:7000/0"}
    assert [e["NODE"] for e in envs] == ["1", "2"]
    assert [e["PORT"] for e in envs] == ["4000", "4001"]
    assert envs[0]["OWN"] != envs[1]["OWN"]


def _image_settings(**more):
    return SimpleNamespace(**{**vars(_settings(dict(DEFAULT_GATEWAY_ENV))), "target_kind": "image",
                              "gateway_image": "example/gw:1", "gateway_startup_timeout": 30.0,
                              "socketio_path": "/socket.io/", "redis": "container", "redis_image": "example/redis:7",
                              "redis_url": None, **more})


@pytest.mark.parametrize("kind, expected", [("process", "PrivateRedis"), ("container", "RedisContainer"),
                                            ("external", "ExternalRedis")])
def test_the_redis_setting_picks_the_provider(kind: str, expected: str):
    settings = _image_settings(redis=kind, redis_url="redis://127.0.0.1:6390/0" if kind == "external" else None)
    redis = make_redis(settings)
    assert type(redis).__name__ == expected
    if kind == "container":
        assert redis.image == "example/redis:7"
        assert redis.url == f"redis://{LOOPBACK}:{redis.host_port}/0"  # the harness's way in: published on loopback
        assert redis.gateway_url == "redis://redis:6379/0"  # the gateways' way in: the network alias


def test_a_redis_container_joins_the_brokers_network():
    from realtime_conformance.harness.providers.containers import ContainerNetwork

    net = ContainerNetwork("rtc-not-created")
    redis = make_redis(_image_settings(), network=net)
    assert redis.network is net and gateway_network(SimpleNamespace(), redis) is net
    # The main cluster's Redis and a dedicated cluster's share the network: one alias would name both.
    other = make_redis(_image_settings(), network=net)
    assert redis.gateway_url != other.gateway_url
    assert redis.gateway_url == f"redis://{redis.alias}:6379/0" and redis.alias.startswith("redis-")
    assert gateway_network(SimpleNamespace(network="broker-net"), redis) == "broker-net"


def test_image_replicas_share_a_mounted_folder_and_reach_redis_by_alias(tmp_path: Path):
    """Each replica container: its own host port, the broker's network, the same shared folder bound at
    the same path (so one DATABASE_PATH names it for all), Redis by alias, its replica number."""
    from realtime_conformance.harness.providers.containers import ContainerNetwork, ImageGateway, RedisContainer

    net = ContainerNetwork("rtc-not-created")
    broker = SimpleNamespace(amqp_url="amqp://guest:guest@127.0.0.1:5999/",
                             gateway_amqp_url="amqp://guest:guest@rabbitmq:5672/", network=net)
    settings = _image_settings(gateway_env={**DEFAULT_GATEWAY_ENV, "NODE": "{replica}"})
    redis = RedisContainer("example/redis:7", network=net)
    shared = tmp_path / "shared"
    gateways = [make_gateway(settings, broker, queue="q", workdir=tmp_path / f"i{n}", name=f"gw{n}",
                             shared_dir=shared, redis_url=redis_url_for(settings, redis), replica=n,
                             network=gateway_network(broker, redis)) for n in range(2)]
    assert all(isinstance(g, ImageGateway) for g in gateways)
    assert len({g.host_port for g in gateways}) == 2
    assert all(g.network is net for g in gateways)
    assert [g.volumes for g in gateways] == [{str(shared.resolve()): str(shared.resolve())}] * 2
    assert {g.env["DATABASE_PATH"] for g in gateways} == {f"{shared.resolve()}/gateway.sqlite3"}
    assert {g.env["REDIS_URL"] for g in gateways} == {"redis://redis:6379/0"}
    assert {g.env["RABBITMQ_URL"] for g in gateways} == {"amqp://guest:guest@rabbitmq:5672/"}
    assert [g.env["NODE"] for g in gateways] == ["1", "2"]
    assert shared.is_dir()


def test_a_lone_image_gateway_mounts_nothing(tmp_path: Path):
    broker = SimpleNamespace(amqp_url="amqp://guest:guest@127.0.0.1:5999/", gateway_amqp_url="amqp://x@rabbitmq:5672/")
    gateway = make_gateway(_image_settings(), broker, queue="q", workdir=tmp_path / "main", name="gw")
    assert gateway.volumes == {} and gateway.env["REDIS_URL"] == ""
    assert gateway.env["DATABASE_PATH"] == "/tmp/gateway.sqlite3"


def test_process_replicas_reach_redis_on_loopback():
    redis = PrivateRedis()
    assert redis_url_for(_settings({}), redis) == redis.url
    assert redis_url_for(_settings({}), None) == ""
