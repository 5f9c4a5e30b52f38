"""PortalTab against socket.io-client 4 itself, on one script, against a bare socket.io 4 server.

The emulator self-test (tests/test_emulator_vs_browser.py) compares verdicts through whole
conformance runs; this compares what the application is shown, event by event, in a sequence no
named gateway produces: a resume refused by a middleware after socket.io has already written the
missed packets (skipMiddlewares false), then the app's reconnect with a fresh token. The real
client runs in Chromium from a real page server; both go through a FaultProxy to
tests/harness/recovery_server.js. Skipped where Chromium, Playwright or the cached socket.io-client
(scripts/install-browser.sh) is missing. About 10 s.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from realtime_conformance.harness.wire import browser
from realtime_conformance.harness.wire.clients import TenantClient
from realtime_conformance.harness.wire.portal import PortalTab, ReconnectPolicy
from realtime_conformance.harness.wire.proxy import FaultProxy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_recovery_client import SocketIOServer  # noqa: E402 - the same bare server fixture

POLICY = ReconnectPolicy(attempts=8, delay=0.2, delay_max=0.5, randomization=0.0, attempt_timeout=2.0)

# socket.io-client in the page: the same policy, websocket only (the server sets no CORS headers
# for the page's polling; the websocket handshake is not subject to CORS), a token read at every connect.
SCRIPT = """async ({url, delay, delayMax, attempts}) => {
  const w = window; w.tokenValue = "good"; w.shown = []; w.errors = [];
  const s = io(url, {transports: ["websocket"], auth: cb => cb({token: w.tokenValue}), reconnectionDelay: delay,
                     reconnectionDelayMax: delayMax, randomizationFactor: 0, reconnectionAttempts: attempts});
  w.sock = s;
  s.on("metrics_update", d => w.shown.push(d.n));
  s.on("connect_error", e => w.errors.push(e.data && e.data.code || e.message));
  await new Promise((ok, no) => { s.once("connect", ok); setTimeout(() => no(new Error("no connect")), 5000); });
}"""


def _browser_ready() -> str | None:
    """Chromium's path when Chromium, Playwright and a cached socket.io-client are all here (nothing is fetched)."""
    try:
        path = browser.find_browser(None)
        browser.playwright_api()
    except browser.BrowserUnavailable:
        return None
    return path if (browser.cache_dir() / "socket.io.min.js").is_file() else None


async def _until(predicate, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _scenario(server: SocketIOServer, client) -> list[int]:
    """connect, n=0, cut, n=1 while cut, expired token, heal (refused resume), fresh token, connect, n=2."""
    pub = TenantClient(name="publisher", tenant="t1", url=server.url, token="good")
    assert await pub.connect()
    try:
        async with FaultProxy("127.0.0.1", server.port) as proxy:
            await client.start(proxy.url_for())
            await pub.emit("publish", {"event": "metrics_update", "data": {"n": 0}})
            assert await _until(lambda: client.has(0), 5)
            proxy.cut()
            assert await _until(client.disconnected, 5)
            await client.token("expired-now")
            await pub.emit("publish", {"event": "metrics_update", "data": {"n": 1}})
            assert await pub.wait_for(lambda c: len(c.received) >= 2, 5)
            proxy.pass_through()
            assert await _until(client.refused, 10), "the expired resume was not refused"
            await client.token("good")
            await client.reconnect()
            await pub.emit("publish", {"event": "metrics_update", "data": {"n": 2}})
            assert await _until(lambda: client.has(2), 5)
            await asyncio.sleep(0.3)  # anything else the server sends has arrived
            return await client.shown()
    finally:
        await client.close()
        await pub.close()


class _Page:
    def __init__(self, page) -> None:
        self.page = page

    async def start(self, url: str) -> None:
        await self.page.evaluate(SCRIPT, {"url": url, "delay": POLICY.delay * 1000, "delayMax": POLICY.delay_max * 1000,
                                          "attempts": POLICY.attempts})

    async def has(self, n: int) -> bool:
        return bool(await self.page.evaluate("n => window.shown.includes(n)", n))

    async def disconnected(self) -> bool:
        return not await self.page.evaluate("() => window.sock.connected")

    async def refused(self) -> bool:
        return bool(await self.page.evaluate("() => window.errors.includes('token_expired')"))

    async def token(self, value: str) -> None:
        await self.page.evaluate("v => { window.tokenValue = v; }", value)

    async def reconnect(self) -> None:
        await self.page.evaluate("() => window.sock.connect()")

    async def shown(self) -> list[int]:
        return list(await self.page.evaluate("() => window.shown"))

    async def close(self) -> None:
        await self.page.evaluate("() => window.sock.close()")


class _Tab:
    def __init__(self) -> None:
        self.value = "good"
        self.tab: PortalTab | None = None

    async def start(self, url: str) -> None:
        self.tab = PortalTab(name="tab", base_url=url, token_provider=lambda: self.value, policy=POLICY,
                             active_queries=())
        await self.tab.connect(timeout=2.0)

    async def has(self, n: int) -> bool:
        return n in await self.shown()

    async def disconnected(self) -> bool:
        return self.tab.state != "live"

    async def refused(self) -> bool:
        return any(code == "token_expired" for _, code in self.tab.refusals)

    async def token(self, value: str) -> None:
        self.value = value

    async def reconnect(self) -> None:
        # socket.io-client stops after a refusal and the app reconnects with its fresh token; the emulator's
        # backoff carries on with the fresh token instead (a documented simplification): the same one accepted
        # connect after one refusal, as long as the token changed before its next attempt.
        assert len(self.tab.refusals) == 1, self.tab.refusals
        await self.tab.wait_for_state("live", 10)

    async def shown(self) -> list[int]:
        return [d["n"] for _, name, d in self.tab.events if name == "metrics_update"]

    async def close(self) -> None:
        await self.tab.close()


@pytest.mark.asyncio
async def test_portal_tab_shows_what_socket_io_client_shows_after_a_refused_resume() -> None:
    executable = _browser_ready()
    if executable is None:
        pytest.skip("needs Chromium, Playwright and socket.io-client (scripts/install-browser.sh)")
    server = SocketIOServer(skip_middlewares=False)
    await server.start()
    try:
        with browser.PageServer(browser.client_script()) as pages:
            try:
                chromium = await browser.Browser(executable).__aenter__()
            except browser.BrowserUnavailable as exc:  # CI installs Chromium while the unit tests run
                pytest.skip(str(exc))
            try:
                tab = await chromium.tab(pages.origin)
                real = await _scenario(server, _Page(tab.page))
            finally:
                await chromium.__aexit__(None, None, None)
        emulated = await _scenario(server, _Tab())
    finally:
        await server.stop()
    assert emulated == real, f"PortalTab showed {emulated}, socket.io-client {real}"
