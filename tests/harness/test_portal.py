"""PortalTab against a tiny fake gateway (real python-socketio server, real HTTP, loopback).

The fake exists only to check the emulator: that it loops the way the seed's
frontend loops, keeps the portal's reconnect schedule, asks for a fresh token
on every reconnect, and costs nothing when idle.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, AsyncIterator

import pytest
import pytest_asyncio
import socketio
from aiohttp import web

from realtime_conformance import contract
from realtime_conformance.harness.wire.proxy import FaultProxy
from realtime_conformance.harness.wire.portal import PortalConnectError, PortalTab, ReconnectPolicy
from realtime_conformance.harness.providers.ports import free_port

FAST = ReconnectPolicy(attempts=5, delay=0.05, delay_max=0.2, randomization=0.5, attempt_timeout=2.0)


class FakeGateway:
    """Socket.IO + REST on one loopback port; tokens starting with "expired" are refused with token_expired."""

    def __init__(self, *, emit_on_every_stats: bool) -> None:
        self.emit_on_every_stats = emit_on_every_stats
        self.port = free_port()
        self.metrics = {"activeConversations": 1, "waitingConversations": 0, "totalMessagesToday": 0,
                        "avgResponseTime": 1.0, "timestamp": "t0"}
        self._last_emitted: dict[str, Any] | None = None
        self.tokens_seen: list[str] = []
        self.stats_gets = 0
        self._runner: web.AppRunner | None = None
        self.sio: socketio.AsyncServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=1, ping_timeout=1)
        app = web.Application()
        sio.attach(app, socketio_path="socket.io")
        paths = contract.rest_paths()

        @sio.event
        async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
            token = (auth or {}).get("token", "")
            self.tokens_seen.append(token)
            if token.startswith("expired"):
                raise socketio.exceptions.ConnectionRefusedError("token expired", {"code": "token_expired"})
            await sio.enter_room(sid, "tenant:t1")

        async def stats(request: web.Request) -> web.Response:
            self.stats_gets += 1
            if self.emit_on_every_stats or self.metrics != self._last_emitted:
                await self.emit_metrics()
            return web.json_response(self.metrics)

        async def conversations(request: web.Request) -> web.Response:
            return web.json_response([{"id": "c1"}])

        async def messages(request: web.Request) -> web.Response:
            return web.json_response([{"conversationId": request.match_info["conversationId"]}])

        app.router.add_get(paths["stats"], stats)
        app.router.add_get(paths["conversations"], conversations)
        app.router.add_get(paths["messages"], messages)
        self.sio = sio
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def emit_metrics(self) -> None:
        assert self.sio is not None
        self._last_emitted = dict(self.metrics)
        await self.sio.emit("metrics_update", self.metrics, room="tenant:t1")

    async def change(self) -> None:
        """A real change: one more message today."""
        self.metrics = {**self.metrics, "totalMessagesToday": self.metrics["totalMessagesToday"] + 1}
        await self.emit_metrics()

    async def stop(self) -> None:
        if self.sio is not None and self._runner is not None:
            await self.sio.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest_asyncio.fixture
async def loop_gateway() -> AsyncIterator[FakeGateway]:
    gw = FakeGateway(emit_on_every_stats=True)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@pytest_asyncio.fixture
async def change_gateway() -> AsyncIterator[FakeGateway]:
    gw = FakeGateway(emit_on_every_stats=False)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def _tab(gw: FakeGateway, **kwargs: Any) -> PortalTab:
    kwargs.setdefault("token_provider", lambda: "good")
    kwargs.setdefault("policy", FAST)
    kwargs.setdefault("base_url", gw.url)
    return PortalTab(name="tab", rng=random.Random(7), **kwargs)


def test_backoff_matches_socket_io_client_v4() -> None:
    portal = ReconnectPolicy()
    # r = 0.1: floor(10r) = 1, odd -> add; r = 0.25: floor = 2, even -> subtract
    assert portal.delay_ms(1, 0.1) == 1050
    assert portal.delay_ms(1, 0.25) == 875
    assert portal.delay_ms(3, 0.95) == 5000  # 4000 + 1900, capped
    assert portal.bounds(1) == (0.5, 1.5)
    assert portal.bounds(2) == (1.0, 3.0)
    assert portal.bounds(3) == (2.0, 5.0)
    assert portal.bounds(5) == (5.0, 5.0)
    rng = random.Random(1)
    for n in range(1, 8):
        low, high = portal.bounds(n)
        for _ in range(200):
            assert low * 1000 <= portal.delay_ms(n, rng.random()) <= high * 1000


@pytest.mark.asyncio
async def test_refetch_loop_never_quiesces(loop_gateway: FakeGateway) -> None:
    async with _tab(loop_gateway) as tab:
        await tab.connect(timeout=2.0)
        await loop_gateway.change()
        quiet = await tab.wait_quiescent(quiet_for=0.5, timeout=3.0)
        assert quiet is False
        assert tab.stats_requests > 10
        assert tab.metrics_updates_received > 10
        first = tab.stats_requests
        await tab.wait_for_event("metrics_update", timeout=2.0)
        assert tab.stats_requests >= first  # still going, bounded only by this test's timeouts
    assert tab.state == "closed"


@pytest.mark.asyncio
async def test_emit_on_change_only_quiesces(change_gateway: FakeGateway) -> None:
    async with _tab(change_gateway) as tab:
        tab.open_conversation("c1")
        await tab.connect(timeout=2.0)
        await change_gateway.change()
        assert await tab.wait_quiescent(quiet_for=0.5, timeout=3.0) is True
        assert tab.metrics_updates_received == 1
        assert tab.stats_requests == 1
        assert tab.cache[("dashboard-metrics",)].data["totalMessagesToday"] == 1
        assert tab.cache[("dashboard-metrics",)].stale is False
        statuses = await tab.refresh_all()
        assert statuses == {
            ("conversation-messages", "c1"): 200,
            ("conversations",): 200,
            ("dashboard-metrics",): 200,
        }


@pytest.mark.asyncio
async def test_idle_tab_costs_nothing(change_gateway: FakeGateway) -> None:
    async with _tab(change_gateway) as tab:
        await tab.connect(timeout=2.0)
        assert await tab.wait_quiescent(quiet_for=2.0, timeout=3.0) is True
        assert tab.http_requests == []
        assert tab.state == "live"


@pytest.mark.asyncio
async def test_reconnect_schedule_after_the_server_goes_away(change_gateway: FakeGateway) -> None:
    async with _tab(change_gateway) as tab:
        await tab.connect(timeout=2.0)
        await change_gateway.stop()
        await tab.wait_for_state("warning", timeout=3.0)
        await tab.wait_for_state("failed", timeout=5.0)
        schedule = tab.reconnect_schedule()
        assert [row["n"] for row in schedule] == [1, 2, 3, 4, 5]
        assert not any(row["ok"] for row in schedule)
        for row in schedule:
            assert row["min_ms"] <= row["delay_ms"] <= row["max_ms"]
            assert row["waited_ms"] >= row["delay_ms"] - 1
            assert row["waited_ms"] <= row["delay_ms"] + 250
        assert [a.error_code for a in tab.attempts] == ["transport error"] * 5
        assert tab.reconnect_failed == 1
        assert [s for _, s in tab.state_history] == ["connecting", "live", "warning", "failed"]
        # the manual refresh still tries REST; with the server gone there is no response
        assert set((await tab.refresh_all()).values()) == {0}


@pytest.mark.asyncio
async def test_reconnect_with_a_fresh_token_after_token_expired(change_gateway: FakeGateway) -> None:
    tokens = iter(["good", "expired-1", "expired-2", "good-2"])
    asked: list[str] = []

    def provider() -> str:
        asked.append(next(tokens, "good-later"))
        return asked[-1]

    async with FaultProxy("127.0.0.1", change_gateway.port) as proxy, _tab(
        change_gateway, token_provider=provider, base_url=proxy.url_for()
    ) as tab:
        await tab.connect(timeout=2.0)
        proxy.reset()  # drop the transport under the client, as a restart or a network blip would
        await tab.wait_for_state("warning", timeout=3.0)
        await tab.wait_for_state("live", timeout=5.0)
        assert asked == ["good", "expired-1", "expired-2", "good-2"]
        assert change_gateway.tokens_seen == asked
        assert [(a.n, a.ok, a.error_code) for a in tab.attempts] == [
            (1, False, "token_expired"), (2, False, "token_expired"), (3, True, None)]
        await change_gateway.change()
        await tab.wait_for_event("metrics_update", timeout=2.0, since=0)


@pytest.mark.asyncio
async def test_server_side_disconnect_is_not_retried(change_gateway: FakeGateway) -> None:
    async with _tab(change_gateway) as tab:
        await tab.connect(timeout=2.0)
        assert change_gateway.sio is not None
        sids = list(change_gateway.sio.manager.get_participants("/", "tenant:t1"))
        for sid, _ in sids:
            await change_gateway.sio.disconnect(sid)
        await tab.wait_for_state("warning", timeout=3.0)
        assert tab.disconnects[-1][1] == "io server disconnect"
        # socket.io-client v4 leaves it to the app: no attempt within the first delay's bound
        with pytest.raises(TimeoutError):
            await tab.wait_for_state("live", timeout=FAST.bounds(1)[1] * 3)
        assert tab.attempts == []


@pytest.mark.asyncio
async def test_refused_first_connect_raises_with_the_code(change_gateway: FakeGateway) -> None:
    async with _tab(change_gateway, token_provider=lambda: "expired") as tab:
        with pytest.raises(PortalConnectError) as info:
            await tab.connect(timeout=2.0)
        assert info.value.code == "token_expired"
        assert tab.state == "failed"


@pytest.mark.asyncio
async def test_close_leaves_no_client_task(loop_gateway: FakeGateway) -> None:
    def client_tasks() -> set[asyncio.Task[Any]]:
        mine = ("engineio/async_client", "socketio/async_client", "harness/wire/portal")
        return {
            t for t in asyncio.all_tasks()
            if not t.done() and any(m in t.get_coro().cr_code.co_filename for m in mine)  # type: ignore[union-attr]
        }

    tab = _tab(loop_gateway)
    async with tab:
        await tab.connect(timeout=2.0)
        await loop_gateway.change()  # leave it mid refetch loop
        await tab.wait_for_event("metrics_update", timeout=2.0, since=0)
        assert client_tasks()
    assert client_tasks() == set()
    assert tab.state == "closed"


@pytest.mark.asyncio
async def test_partition_through_fault_proxy_is_noticed_and_healed(change_gateway: FakeGateway) -> None:
    async with FaultProxy("127.0.0.1", change_gateway.port) as proxy:
        async with _tab(change_gateway, base_url=proxy.url_for()) as tab:
            await tab.connect(timeout=2.0)
            proxy.blackhole()
            # the fake pings every 1 s with a 1 s timeout: silence is noticed within about 2 s
            await tab.wait_for_state("warning", timeout=4.0)
            assert tab.disconnects[-1][1] == "transport error"
            proxy.pass_through()
            await tab.wait_for_state("live", timeout=3.0)
            assert tab.attempts[-1].ok
            await change_gateway.change()
            await tab.wait_for_event("metrics_update", timeout=2.0, since=0)
