"""The portal in a real browser: Chromium driven by Playwright, socket.io-client from npm.

A browser does what no client of ours does: it always sends ``Origin``, preflights a REST call
that carries ``Authorization`` and refuses an answer without the right CORS headers. So the
page comes from a real HTTP server on loopback (``PageServer``), never from Playwright's request
routing: with routing on, Playwright answers Chromium's preflights itself and a gateway whose
preflight is wrong looks right. One server serves two origins: ``http://localhost:<port>``
(added to a harness-started gateway's allowed origins) and ``http://127.0.0.1:<port>`` (not
added: the forbidden origin ORIG-3 needs).

Nothing here is downloaded behind the user's back except socket.io-client, pinned, with npm, into
a cache folder at first use (the wheel stays pure Python). Playwright is the ``[browser]`` extra
and launches the system's Chromium by path; it never downloads a browser.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import http.server
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

from realtime_conformance.harness.providers.ports import LOOPBACK

SOCKET_IO_CLIENT = "4.8.4"  # the portal's client: socket.io-client 4
BROWSER_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
INSTALL_BROWSER = "apt-get install -y chromium && pip install 'realtime-conformance[browser]'"
INSTALL_NPM = "apt-get install -y nodejs npm"
PAGE_DIR = Path(__file__).parent
SCREENSHOT_QUALITY = 70  # JPEG: a tab's screenshot stays in the tens of kilobytes
VIEWPORT = {"width": 720, "height": 420}


class BrowserUnavailable(RuntimeError):
    """This machine cannot run the browser checks; the message says why and how to fix it."""


def cache_dir() -> Path:
    """Where socket.io-client is kept between runs (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "realtime-conformance" / f"socket.io-client-{SOCKET_IO_CLIENT}"


_install_lock = threading.Lock()


def client_script(folder: Path | None = None, *, npm: str | None = None, timeout_s: float = 180.0) -> Path:
    """socket.io-client's browser bundle, fetched once with ``npm pack`` into the cache folder.

    The registry's integrity check is npm's; the file is moved into place whole, so a run that
    is stopped half-way leaves nothing a later run would trust."""
    folder = folder or cache_dir()
    target = folder / "socket.io.min.js"
    with _install_lock:
        if target.is_file() and target.stat().st_size > 0:
            return target
        npm = npm or shutil.which("npm")
        if not npm:
            raise BrowserUnavailable(f"npm is not installed, and the page needs socket.io-client {SOCKET_IO_CLIENT} "
                                     f"from it (once, into {folder}): {INSTALL_NPM}")
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as work:
            try:
                done = subprocess.run([npm, "pack", f"socket.io-client@{SOCKET_IO_CLIENT}", "--silent"], cwd=work,
                                      capture_output=True, text=True, timeout=timeout_s, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise BrowserUnavailable(f"npm pack socket.io-client@{SOCKET_IO_CLIENT} did not finish: {exc}") from None
            tarballs = sorted(Path(work).glob("socket.io-client-*.tgz"))
            if done.returncode != 0 or not tarballs:
                raise BrowserUnavailable(f"npm pack socket.io-client@{SOCKET_IO_CLIENT} failed (exit {done.returncode}): "
                                         f"{(done.stderr or done.stdout).strip()[-300:]}; check that npm reaches its registry")
            with tarfile.open(tarballs[0]) as tar:
                member = tar.extractfile("package/dist/socket.io.min.js")
                if member is None:
                    raise BrowserUnavailable(f"socket.io-client@{SOCKET_IO_CLIENT} has no dist/socket.io.min.js")
                partial = Path(work) / "socket.io.min.js"
                partial.write_bytes(member.read())
            os.replace(partial, target)
        return target


def find_browser(path: str | None) -> str:
    """The Chromium to launch: ``path`` when given, else the first of the usual names found."""
    if path:
        resolved = shutil.which(path) or (path if os.access(path, os.X_OK) and Path(path).is_file() else None)
        if not resolved:
            raise BrowserUnavailable(f"--browser-path {path} is not an executable file; install Chromium "
                                     f"({INSTALL_BROWSER}) or give the path of one")
        return resolved
    for name in BROWSER_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserUnavailable(f"no Chromium found (looked for {', '.join(BROWSER_CANDIDATES)}): {INSTALL_BROWSER}, "
                             "or name one with --browser-path")


def playwright_api() -> Any:
    """Playwright's async API, or why it is missing."""
    try:
        from playwright import async_api
    except ImportError:
        raise BrowserUnavailable(f"Playwright is not installed: {INSTALL_BROWSER}") from None
    return async_api


def _page_files(script: Path) -> dict[str, tuple[str, bytes]]:
    return {
        "/": ("text/html; charset=utf-8", (PAGE_DIR / "portal_page.html").read_bytes()),
        "/portal.js": ("text/javascript; charset=utf-8", (PAGE_DIR / "portal_page.js").read_bytes()),
        "/socket.io.min.js": ("text/javascript; charset=utf-8", script.read_bytes()),
    }


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, tuple[str, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        found = self.files.get(urlsplit(self.path).path)
        if found is None:
            self.send_error(404)
            return
        kind, body = found
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: the run's output is the report
        return


class PageServer:
    """The portal page on a loopback port, in a thread: a real server, so the browser's CORS is real."""

    def __init__(self, script: Path, port: int = 0) -> None:
        handler = type("PortalPageHandler", (_Handler,), {"files": _page_files(script)})
        self._server = http.server.ThreadingHTTPServer((LOOPBACK, port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="rtc-page-server", daemon=True)

    @property
    def origin(self) -> str:
        """The origin the gateway is told to allow."""
        return f"http://localhost:{self.port}"

    @property
    def other_origin(self) -> str:
        """The same page from an origin the gateway was not told about (ORIG-3's forbidden case)."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> "PageServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "PageServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class SocketSeen:
    """A websocket the page opened, as DevTools' Network tab shows it."""

    url: str
    frames_sent: list[str] = field(default_factory=list)
    frames_received: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        parts = urlsplit(self.url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return {"path": parts.path, "EIO": query.get("EIO"), "transport": query.get("transport"),
                "frames_sent": len(self.frames_sent), "frames_received": len(self.frames_received)}


MAX_FRAMES = 200  # per socket and direction: bounded memory, enough for a failure's attachment


class BrowserTab:
    """One page of the portal; the harness reads its state through ``window.portal``."""

    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.name = name
        self.sockets: list[SocketSeen] = []
        self.console: list[str] = []
        page.on("websocket", self._on_socket)
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"[:500])
                if len(self.console) < MAX_FRAMES else None)

    def _on_socket(self, ws: Any) -> None:
        seen = SocketSeen(ws.url)
        self.sockets.append(seen)
        ws.on("framesent", lambda payload: _keep(seen.frames_sent, payload))
        ws.on("framereceived", lambda payload: _keep(seen.frames_received, payload))

    async def open(self, origin: str) -> "BrowserTab":
        await self.page.goto(origin + "/", wait_until="load", timeout=15_000)
        await self.page.wait_for_function("() => window.portal && window.io", timeout=10_000)
        return self

    async def start(self, *, url: str, token: str, path: str, rest_paths: Mapping[str, str], policy: Any,
                    label: str, rest_url: str | None = None) -> None:
        """Connect as the portal does. The token goes in through ``evaluate`` and stays in the page's closure.
        ``rest_url`` sends REST another way than the socket (straight to the gateway while the socket
        goes through a fault proxy)."""
        await self.page.evaluate("cfg => window.portal.start(cfg)", {
            "url": url.rstrip("/"), "restUrl": (rest_url or url).rstrip("/"), "token": token, "path": path,
            "restPaths": dict(rest_paths), "label": label,
            "attempts": policy.attempts, "delay": policy.delay * 1000, "delayMax": policy.delay_max * 1000,
            "jitter": policy.randomization,
        })

    async def reconnect_with(self, token: str) -> None:
        await self.page.evaluate("t => window.portal.reconnectWith(t)", token)

    async def state(self) -> str:
        return str(await self.page.evaluate("() => window.portal.state"))

    async def wait_state(self, states: Sequence[str], timeout: float) -> str | None:
        """The page's state once it is one of ``states``; None when it is not within ``timeout``."""
        try:
            await self.page.wait_for_function("s => s.includes(window.portal.state)", arg=list(states),
                                              timeout=timeout * 1000)
        except Exception:  # Playwright's TimeoutError: the caller decides what a timeout means
            return None
        return await self.state()

    async def events(self) -> list[dict[str, Any]]:
        return list(await self.page.evaluate("() => window.portal.events"))

    async def errors(self) -> list[dict[str, Any]]:
        return list(await self.page.evaluate("() => window.portal.errors"))

    async def fetches(self) -> list[dict[str, Any]]:
        return list(await self.page.evaluate("() => window.portal.fetches"))

    async def wait_events(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """The events once at least ``count`` arrived, or what arrived by ``timeout``."""
        try:
            await self.page.wait_for_function("n => window.portal.events.length >= n", arg=count,
                                              timeout=timeout * 1000)
        except Exception:  # a timeout: the caller judges what did arrive
            pass
        return await self.events()

    async def wait_markers(self, markers: Sequence[str], timeout: float) -> bool:
        """Whether every marker (a publish's unique value) is in some event the page received, within ``timeout``."""
        try:
            await self.page.wait_for_function(
                "ms => { const seen = JSON.stringify(window.portal.events); return ms.every(m => seen.includes(m)); }",
                arg=list(markers), timeout=timeout * 1000)
        except Exception:  # a timeout: the caller judges what did arrive
            return False
        return True

    async def rest(self, path: str) -> dict[str, Any]:
        """A REST GET from the page, with Authorization, as the portal's API client makes it."""
        return dict(await self.page.evaluate("p => window.portal.rest(p)", path))

    async def wait_socket(self, timeout: float) -> SocketSeen | None:
        """The page's websocket (an upgrade follows the polling handshake, so it may come a moment later)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sockets:
                return self.sockets[-1]
            await asyncio.sleep(0.05)
        return None

    async def screenshot(self) -> bytes:
        return bytes(await self.page.screenshot(type="jpeg", quality=SCREENSHOT_QUALITY))


def _keep(frames: list[str], payload: Any) -> None:
    if len(frames) < MAX_FRAMES:
        frames.append(payload if isinstance(payload, str) else f"<{len(payload)} bytes binary>")


class Browser:
    """Chromium launched by path for one check; ``tab`` opens pages, in one profile or a new one."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self._pw: Any = None
        self._browser: Any = None
        self._contexts: dict[str, Any] = {}
        self.tabs: list[BrowserTab] = []

    async def __aenter__(self) -> "Browser":
        api = playwright_api()
        self._pw = await api.async_playwright().start()
        try:
            self._browser = await self._pw.chromium.launch(executable_path=self.executable, headless=True,
                                                          timeout=30_000)
        except Exception as exc:
            await self._pw.stop()
            raise BrowserUnavailable(f"Chromium at {self.executable} did not start: {str(exc).splitlines()[0]}; "
                                     f"{INSTALL_BROWSER}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._browser is not None:
                await self._browser.close()
        finally:
            if self._pw is not None:
                await self._pw.stop()

    @property
    def version(self) -> str:
        return str(self._browser.version) if self._browser is not None else ""

    def attachments(self, frames: int = 6) -> dict[str, Any]:
        """What a failure shows of each tab: its console's last lines, and each websocket with its first and
        last frames. Not redacted here (the CONNECT frame carries the JWT): the caller's redactor does it."""
        out: dict[str, Any] = {}
        for tab in self.tabs:
            out[tab.name] = {
                "console": tab.console[-20:],
                "websockets": [{**s.describe(), "url": s.url,
                                "sent": s.frames_sent[:frames // 2] + s.frames_sent[-(frames // 2):],
                                "received": s.frames_received[:frames // 2] + s.frames_received[-(frames // 2):]}
                               for s in tab.sockets],
            }
        return out

    async def tab(self, origin: str, *, profile: str = "agent", name: str | None = None) -> BrowserTab:
        """A new tab at ``origin``; tabs of one ``profile`` share a browser profile, as one person's tabs do."""
        context = self._contexts.get(profile)
        if context is None:
            context = self._contexts[profile] = await self._browser.new_context(viewport=VIEWPORT)
        tab = BrowserTab(await context.new_page(), name or f"{profile}/tab{len(self.tabs) + 1}")
        self.tabs.append(tab)
        return await tab.open(origin)


def image(data: bytes, caption: str, mime: str = "image/jpeg") -> dict[str, Any]:
    """A screenshot in the report's shape: embedded, so compliance.html stays one offline file."""
    return {"caption": caption, "mime": mime, "bytes": len(data), "data": base64.b64encode(data).decode("ascii")}


@functools.lru_cache(maxsize=1)
def chromium_version(executable: str) -> str:
    """``chromium --version``'s answer, for the header; empty when it does not answer."""
    try:
        done = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


class PortalPage:
    """Whether this run can make browser checks, and the page server they use.

    Prepared once, before the gateway starts (its origin must be allowed by then); what is
    missing (Chromium, Playwright, npm, a free port) is kept as ``problem`` and becomes each
    check's SKIPPED (``--browser auto``/``off``) or UNKNOWN (``--browser required``)."""

    def __init__(self, settings: Any, server: PageServer | None, executable: str | None, problem: str | None,
                 origin: str | None = None, other_origin: str | None = None) -> None:
        self.settings = settings
        self.server = server
        self.executable = executable
        self.problem = problem
        self.origin = origin
        self.other_origin = other_origin  # the same page from an origin the gateway does not allow, if any

    @classmethod
    def prepare(cls, settings: Any) -> "PortalPage":
        """Find Chromium, Playwright and socket.io-client and start the page server; never raises
        for a missing piece (the checks report it)."""
        if settings.browser == "off":
            return cls(settings, None, None, "the browser checks are off (--browser off)")
        if settings.target_kind == "url" and not settings.browser_origin:
            return cls(settings, None, None, "a --gateway-url target: give --browser-origin http://localhost:PORT, "
                                             "an origin your gateway allows, where the harness can serve the page")
        try:
            executable = find_browser(settings.browser_path)
            playwright_api()
            script = client_script()
        except BrowserUnavailable as exc:
            return cls(settings, None, None, str(exc))
        server = None
        try:
            if settings.browser_origin:
                server = PageServer(script, int(urlsplit(settings.browser_origin).port or 0))
                origin = settings.browser_origin
            else:
                forbidden = set(getattr(settings, "forbidden_origins", ()))
                for _ in range(5):  # a page origin that is one of ORIG-2's look-alikes would make it fail
                    server = PageServer(script)
                    if server.origin not in forbidden:
                        break
                    server._server.server_close()
                assert server is not None
                origin = server.origin
        except OSError as exc:
            return cls(settings, None, None, f"cannot serve the page at {settings.browser_origin or 'a free port'}: "
                                             f"{exc}; give --browser-origin with a free port")
        server.start()
        host = urlsplit(origin).hostname
        other = origin.replace(f"//{host}:", "//127.0.0.1:" if host == "localhost" else "//localhost:", 1)
        if settings.target_kind != "url":
            import dataclasses

            settings = dataclasses.replace(settings, page_origins=(origin,))
        if other in settings.allowed_origins or other in settings.page_origins:
            other = None
        return cls(settings, server, executable, None, origin, other)

    def require(self) -> None:
        """SKIPPED or UNKNOWN, as ``--browser`` says, when the checks cannot run here."""
        if self.problem:
            self.unavailable(self.problem)

    def unavailable(self, why: str) -> None:
        import pytest

        from realtime_conformance.harness.judging.failures import UnknownEvidence

        if self.settings.browser == "required":
            raise UnknownEvidence(f"--browser required, but {why}")
        pytest.skip(f"browser check not run: {why}")

    def launch(self) -> "_Launch":
        """``async with page.launch() as browser``: Chromium for one check, closed after it."""
        return _Launch(self)

    def close(self) -> None:
        """Stop the page server (twice is harmless: the fixture and the session's end both call it)."""
        server, self.server = self.server, None
        if server is not None:
            server.close()


class _Launch:
    def __init__(self, page: PortalPage) -> None:
        self._page = page
        self._browser: Browser | None = None

    async def __aenter__(self) -> Browser:
        assert self._page.executable is not None
        browser = Browser(self._page.executable)
        try:
            await browser.__aenter__()
        except BrowserUnavailable as exc:
            self._page.unavailable(str(exc))
        self._browser = browser
        return browser

    async def __aexit__(self, *exc: object) -> None:
        if self._browser is not None:
            await self._browser.__aexit__(*exc)
