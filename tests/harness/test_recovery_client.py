"""The harness's clients against a real socket.io 4 server with connection state recovery.

python-socketio's client has no recovery; harness/wire/clients.py adds what socket.io-client v4
does. These checks run the clients against socket.io itself (tests/harness/recovery_server.js,
with the Node example gateway's node_modules), over real sockets and a FaultProxy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import AsyncIterator

import pytest
import pytest_asyncio

from realtime_conformance.harness.providers.ports import free_port
from realtime_conformance.harness.wire.clients import RecoverySession, TenantClient
from realtime_conformance.harness.wire.portal import PortalTab, ReconnectPolicy
from realtime_conformance.harness.wire.proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the Node gateway's kit: its node_modules, installed once under a lock
from nodekit import ensure_node_modules  # noqa: E402
SERVER = Path(__file__).with_name("recovery_server.js")
FAST = ReconnectPolicy(attempts=8, delay=0.05, delay_max=0.2, randomization=0.5, attempt_timeout=2.0)

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                       reason="needs `node` and `npm` on PATH (Node.js 20) to run a real socket.io server"),
]


class SocketIOServer:
    def __init__(self, *, skip_middlewares: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: asyncio.subprocess.Process | None = None
        self._env = {**os.environ, "NODE_PATH": str(ensure_node_modules()), "PORT": str(self.port),
                     "SKIP_MIDDLEWARES": "1" if skip_middlewares else "0"}

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "node", str(SERVER), env=self._env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 15)
        assert line.strip() == b"ready", line

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await asyncio.wait_for(self._proc.wait(), 10)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[SocketIOServer]:
    srv = SocketIOServer(skip_middlewares=False)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def _publisher(url: str) -> TenantClient:
    """A second client that asks the server to broadcast to the room (it receives them too)."""
    pub = TenantClient(name="publisher", tenant="t1", url=url, token="good")
    assert await pub.connect()
    return pub


def test_session_auth_is_socket_io_clients() -> None:
    session = RecoverySession()
    assert session.auth({"token": "x"}) == {"token": "x"}  # no pid yet: auth alone
    session.pid = "p1"
    assert session.auth({"token": "x"}) == {"pid": "p1", "token": "x"}  # no offset seen: none sent
    session.offset = "o9"
    assert session.auth({"token": "x"}) == {"pid": "p1", "offset": "o9", "token": "x"}
    assert session.auth({"token": "x", "pid": "mine"})["pid"] == "mine"  # the app's auth wins
    assert session.auth(None) == {"pid": "p1", "offset": "o9"}


@pytest.mark.asyncio
async def test_offsets_are_stripped_and_kept(server: SocketIOServer) -> None:
    pub = await _publisher(server.url)
    client = TenantClient(name="c", tenant="t1", url=server.url, token="good")
    try:
        assert await client.connect()
        assert client.recovery.pid  # the CONNECT ack carried {sid, pid}
        await pub.emit("publish", {"event": "metrics_update", "data": {"n": 1}})
        assert await client.wait_for(lambda c: bool(c.received), 5)
        assert client.received[0].event == "metrics_update"
        assert client.received[0].data == {"n": 1}  # not [data, offset]
        assert isinstance(client.recovery.offset, str)
        # A direct emit carries no offset: a lone string payload is left alone.
        await client.emit("direct", {"event": "hello", "args": ["world"]})
        assert await client.wait_for(lambda c: bool(c.events_named("hello")), 5)
        assert client.events_named("hello")[0].data == "world"
    finally:
        await client.close()
        await pub.close()


@pytest.mark.asyncio
async def test_portal_tab_resumes_and_receives_the_gap(server: SocketIOServer) -> None:
    pub = await _publisher(server.url)
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        tab = PortalTab(name="tab", base_url=proxy.url_for(), token_provider=lambda: "good", policy=FAST,
                        active_queries=())
        async with tab:
            await tab.connect(timeout=2.0)
            await pub.emit("publish", {"event": "metrics_update", "data": {"n": 0}})
            await tab.wait_for_event("metrics_update", timeout=5.0, since=0)  # the tab now has an offset
            proxy.cut()
            await tab.wait_for_state("warning", timeout=5.0)
            for n in (1, 2):
                await pub.emit("publish", {"event": "metrics_update", "data": {"n": n}})
            assert await pub.wait_for(lambda c: len(c.received) >= 3, 5)  # the server did broadcast them
            proxy.pass_through()
            await tab.wait_for_state("live", timeout=5.0)
            await tab.wait_for_event("metrics_update", lambda d: d == {"n": 2}, timeout=5.0, since=0)
            assert [d for _, name, d in tab.events] == [{"n": 0}, {"n": 1}, {"n": 2}]
            assert tab.recovered is True
            assert tab.attempts[-1].ok and tab.attempts[-1].recovered is True
            assert tab.reconnect_schedule()[-1]["recovered"] is True
    await pub.close()


@pytest.mark.asyncio
async def test_no_offset_no_recovery(server: SocketIOServer) -> None:
    """socket.io-client sends no offset before its first event, and socket.io then starts afresh."""
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        async with PortalTab(name="tab", base_url=proxy.url_for(), token_provider=lambda: "good", policy=FAST,
                             active_queries=()) as tab:
            await tab.connect(timeout=2.0)
            pid = tab.recovery.pid
            proxy.cut()
            await tab.wait_for_state("warning", timeout=5.0)
            proxy.pass_through()
            await tab.wait_for_state("live", timeout=5.0)
            assert tab.recovered is False
            assert tab.recovery.pid != pid  # a new session


@pytest.mark.asyncio
async def test_refused_resume_is_recorded_as_withheld(server: SocketIOServer) -> None:
    """With skipMiddlewares false, socket.io still writes the missed packets before its middleware refuses."""
    pub = await _publisher(server.url)
    token = {"value": "good"}
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        client = TenantClient(name="c", tenant="t1", url=proxy.url_for(), token=lambda: token["value"])
        try:
            assert await client.connect()
            await pub.emit("publish", {"event": "metrics_update", "data": {"n": 0}})
            assert await client.wait_for(lambda c: bool(c.received), 5)
            proxy.cut()
            assert await client.wait_for(lambda c: bool(c.disconnected_at), 5)
            await pub.emit("publish", {"event": "metrics_update", "data": {"n": 1}})
            assert await pub.wait_for(lambda c: len(c.received) >= 2, 5)
            proxy.pass_through()
            token["value"] = "expired-now"
            assert await client.connect() is False
            assert client.connect_errors[-1].code == "token_expired"
            assert [(w.event, w.args) for w in client.withheld] == [("metrics_update", [{"n": 1}])]
            assert len(client.received) == 1  # never handed over as an event
        finally:
            await client.close()
    await pub.close()
