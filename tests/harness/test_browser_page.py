"""The browser checks' pieces that need no browser: the page server, socket.io-client's cache,
finding Chromium, and what a machine without them gets (SKIPPED or UNKNOWN, never a crash).

One test opens the page in Chromium; it is skipped where Chromium or Playwright is missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from realtime_conformance.harness.judging.failures import UnknownEvidence
from realtime_conformance.harness.wire import browser
from realtime_conformance.harness.wire.browser import BrowserUnavailable, PageServer, PortalPage


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), b""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "socket.io.min.js"
    path.write_text("window.io = function () {};\n")
    return path


def test_page_server_serves_the_page_its_script_and_nothing_else(script: Path) -> None:
    with PageServer(script) as server:
        assert server.origin == f"http://localhost:{server.port}"
        assert server.other_origin == f"http://127.0.0.1:{server.port}"
        status, headers, body = _get(server.other_origin + "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b'<script src="/socket.io.min.js">' in body and b'id="live"' in body
        assert _get(server.other_origin + "/socket.io.min.js")[2] == script.read_bytes()
        assert b"window.portal" in _get(server.other_origin + "/portal.js")[2]
        assert _get(server.other_origin + "/../../etc/passwd")[0] == 404
        assert _get(server.other_origin + "/api/conversations")[0] == 404


def test_the_page_never_writes_the_token_into_the_document() -> None:
    """Screenshots cannot be redacted: the token is only ever sent, never shown."""
    js = (browser.PAGE_DIR / "portal_page.js").read_text()
    writes = [line for line in js.splitlines() if "textContent" in line or "innerHTML" in line
              or "createTextNode" in line]
    assert writes and not [line for line in writes if "token" in line.lower() or "cfg.token" in line]
    assert "innerHTML" not in js  # text only: event payloads cannot inject markup either


def test_client_script_is_fetched_once_with_npm_pack(tmp_path: Path) -> None:
    """A fake npm that writes the tarball npm pack would: the bundle lands in the cache, and a
    second call does not run npm again."""
    bundle = b"/* socket.io-client */"
    tarball = io.BytesIO()
    with tarfile.open(fileobj=tarball, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/dist/socket.io.min.js")
        info.size = len(bundle)
        tar.addfile(info, io.BytesIO(bundle))
    source = tmp_path / "pack.tgz"
    source.write_bytes(tarball.getvalue())
    calls = tmp_path / "calls"
    npm = tmp_path / "npm"
    npm.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\ncp {source} socket.io-client-{browser.SOCKET_IO_CLIENT}.tgz\n")
    npm.chmod(0o755)
    cache = tmp_path / "cache"
    assert browser.client_script(cache, npm=str(npm)).read_bytes() == bundle
    assert browser.client_script(cache, npm=str(npm)).read_bytes() == bundle
    assert calls.read_text().split() == ["pack", f"socket.io-client@{browser.SOCKET_IO_CLIENT}", "--silent"]


def test_client_script_without_npm_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrowserUnavailable, match=r"npm is not installed.*apt-get install -y nodejs npm"):
        browser.client_script(tmp_path / "cache")


def test_failing_npm_is_reported_not_cached(tmp_path: Path) -> None:
    npm = tmp_path / "npm"
    npm.write_text("#!/bin/sh\necho 'E404 not found' >&2\nexit 1\n")
    npm.chmod(0o755)
    with pytest.raises(BrowserUnavailable, match=r"failed \(exit 1\): E404 not found"):
        browser.client_script(tmp_path / "cache", npm=str(npm))
    assert not (tmp_path / "cache" / "socket.io.min.js").exists()


def test_find_browser(tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert browser.find_browser(str(fake)) == str(fake)
    with pytest.raises(BrowserUnavailable, match=r"--browser-path /no/such/chromium is not an executable file; "
                                                 r"install Chromium \(apt-get install -y chromium"):
        browser.find_browser("/no/such/chromium")


@dataclasses.dataclass
class _Settings:
    browser: str = "auto"
    browser_path: str | None = "/no/such/chromium"
    browser_origin: str | None = None
    gateway_url: str | None = None
    allowed_origins: tuple[str, ...] = ("http://localhost:3014",)
    forbidden_origins: tuple[str, ...] = ()
    page_origins: tuple[str, ...] = ()

    @property
    def target_kind(self) -> str:
        return "url" if self.gateway_url else "process"


@pytest.mark.parametrize("mode, outcome", [("auto", "skip"), ("off", "skip"), ("required", "unknown")])
def test_a_machine_without_a_browser(mode: str, outcome: str) -> None:
    """auto and off: SKIPPED with the reason and the fix; required: UNKNOWN."""
    page = PortalPage.prepare(_Settings(browser=mode))
    assert page.server is None and page.problem
    if outcome == "skip":
        with pytest.raises(pytest.skip.Exception, match="browser check not run"):
            page.require()
    else:
        with pytest.raises(UnknownEvidence, match=r"--browser required, but --browser-path /no/such/chromium"):
            page.require()


def test_a_url_target_needs_a_browser_origin() -> None:
    page = PortalPage.prepare(_Settings(gateway_url="http://127.0.0.1:3015", browser_path=None))
    assert page.problem and "give --browser-origin http://localhost:PORT" in page.problem


def test_prepare_serves_the_page_and_allows_its_origin(tmp_path: Path, script: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """For a harness-started gateway the page's origin joins the gateway's allowed origins (page_origins);
    the other loopback name of the same server is the forbidden origin."""
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setattr(browser, "client_script", lambda: script)
    monkeypatch.setattr(browser, "playwright_api", lambda: None)
    page = PortalPage.prepare(_Settings(browser_path=str(fake)))
    try:
        assert page.problem is None and page.server is not None
        assert page.settings.page_origins == (page.origin,) == (f"http://localhost:{page.server.port}",)
        assert page.other_origin == f"http://127.0.0.1:{page.server.port}"
        assert _get(page.origin + "/")[0] == 200
    finally:
        page.close()
        page.close()


def test_gateway_environment_allows_the_page_origin() -> None:
    from realtime_conformance.harness.providers.target import gateway_environment
    from realtime_conformance.harness.settings import Settings

    fields = {f.name: None for f in dataclasses.fields(Settings) if f.default is dataclasses.MISSING
              and f.default_factory is dataclasses.MISSING}
    settings = Settings(**{**fields, "allowed_origins": ("http://localhost:3014",), "jwt_secret": "x" * 40,
                           "gateway_env": {"ALLOWED_ORIGINS": "{allowed_origins}"}, "gateway_url": None,
                           "gateway_cmd": None, "gateway_image": None, "jwt_algorithm": "HS256"},
                        page_origins=("http://localhost:40001",))

    class _Broker:
        amqp_url = "amqp://guest:guest@127.0.0.1:5672/"

    env = gateway_environment(settings, _Broker(), port=1, queue="q", workdir=Path("/tmp"))  # type: ignore[arg-type]
    assert env["ALLOWED_ORIGINS"] == "http://localhost:3014,http://localhost:40001"


def test_portal_page_in_chromium(tmp_path: Path, script: Path) -> None:
    """The page loads in the real browser from the real server; a screenshot decodes."""
    try:
        executable = browser.find_browser(None)
        browser.playwright_api()
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))

    async def run() -> tuple[str, int]:
        with PageServer(script) as server:
            async with browser.Browser(executable) as chromium:
                tab = await chromium.tab(server.origin)
                return await tab.state(), len(await tab.screenshot())

    try:
        state, size = asyncio.run(run())
    except BrowserUnavailable as exc:  # e.g. CI installs Chromium in the background while this runs
        pytest.skip(str(exc))
    assert state == "idle" and size > 1000


def test_the_connect_frame_is_redacted() -> None:
    """A failure's attachments include the page's websocket frames; socket.io's CONNECT carries the JWT."""
    from realtime_conformance.harness.redaction import Redactor

    frame = '40{"token":"eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnRJZCI6ImEifQ.c2lnbmF0dXJlLXNlY3JldA"}'
    shown = Redactor([]).value({"tab 1": {"websockets": [{"sent": [frame]}]}})
    assert "c2lnbmF0dXJlLXNlY3JldA" not in str(shown) and "<signature>" in str(shown)


def test_a_url_target_gets_the_page_at_its_browser_origin(tmp_path: Path, script: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """--browser-origin: the page is served at that port; the gateway's list is the user's (nothing added),
    and the other loopback name is the forbidden origin unless the user's list allows it too."""
    from realtime_conformance.harness.providers.ports import free_port

    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setattr(browser, "client_script", lambda: script)
    monkeypatch.setattr(browser, "playwright_api", lambda: None)
    port = free_port()
    settings = _Settings(browser_path=str(fake), gateway_url="http://127.0.0.1:3015",
                         browser_origin=f"http://localhost:{port}")
    page = PortalPage.prepare(settings)
    try:
        assert page.problem is None and page.origin == f"http://localhost:{port}"
        assert page.settings.page_origins == () and page.other_origin == f"http://127.0.0.1:{port}"
        assert _get(f"http://127.0.0.1:{port}/")[0] == 200
    finally:
        page.close()
    both = dataclasses.replace(settings, allowed_origins=(f"http://localhost:{port}", f"http://127.0.0.1:{port}"))
    page = PortalPage.prepare(both)
    try:
        assert page.other_origin is None  # ORIG-3's browser check then judges the allowed origin only
    finally:
        page.close()


def test_a_busy_browser_origin_is_reported(tmp_path: Path, script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setattr(browser, "client_script", lambda: script)
    monkeypatch.setattr(browser, "playwright_api", lambda: None)
    with PageServer(script) as busy:
        page = PortalPage.prepare(_Settings(browser_path=str(fake), gateway_url="http://127.0.0.1:3015",
                                            browser_origin=f"http://localhost:{busy.port}"))
    assert page.server is None and page.problem and "give --browser-origin with a free port" in page.problem
