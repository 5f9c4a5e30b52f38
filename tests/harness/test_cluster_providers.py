"""The pieces a cluster run is made of, on real sockets: the private Redis, the balancing proxy,
and the environment each replica gets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from realtime_conformance.harness.providers.ports import LOOPBACK, free_port
from realtime_conformance.harness.providers.redis_server import ExternalRedis, PrivateRedis, redis_answers
from realtime_conformance.harness.providers.target import gateway_environment
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
                           tenant_claim="tenantId", allowed_origins=("http://localhost:3000",))


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
