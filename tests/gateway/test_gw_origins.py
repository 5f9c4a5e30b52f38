"""Origins (ORIG-1, ORIG-2): exact match on polling, on a direct websocket and on
the polling->websocket upgrade; look-alikes refused; no Origin header allowed."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from gwkit import Client, GatewayProcess, arun, mint

ALLOWED = ["http://localhost:3014", "https://portal.example.com", "http://127.0.0.1:8080"]
LOOK_ALIKES = [
    "https://localhost:3014",            # other scheme
    "http://localhost:3015",             # other port
    "http://localhost",                  # no port
    "http://localhost:30140",            # longer port
    "http://localhost:3014.evil.com",    # suffix
    "http://evil-localhost:3014",        # prefix
    "http://portal.example.com",         # other scheme
    "https://portal.example.com.evil.io",
    "https://evilportal.example.com",
    "https://portal.example.com:443",
    "https://sub.portal.example.com",
    "http://localhost:3014/",            # trailing slash
    "null",
    "HTTP://LOCALHOST:3014",
]


def _raw_polling(url: str, origin: str | None) -> int:
    req = urllib.request.Request(f"{url}/socket.io/?EIO=4&transport=polling")
    if origin is not None:
        req.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_raw_polling_handshake(gateway: GatewayProcess) -> None:
    assert _raw_polling(gateway.url, None) == 200
    for origin in ALLOWED:
        assert _raw_polling(gateway.url, origin) == 200, origin
    for origin in LOOK_ALIKES:
        assert _raw_polling(gateway.url, origin) == 400, origin


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]])
def test_clients_by_origin(gateway: GatewayProcess, transports: list[str]) -> None:
    async def body() -> None:
        token = mint("origin-tenant")
        for origin in ALLOWED:
            c = Client()
            assert await c.connect(gateway.url, auth={"token": token}, transports=transports,
                                   headers={"Origin": origin}), (origin, c.refusal)
            if transports == ["polling", "websocket"]:
                await c.sio.sleep(0.3)  # give the upgrade time to happen
                assert c.sio.transport() == "websocket", origin
            await c.close()
        for origin in LOOK_ALIKES[:8]:
            c = Client()
            assert not await c.connect(gateway.url, auth={"token": token}, transports=transports,
                                       headers={"Origin": origin}), origin
        c = Client()
        assert await c.connect(gateway.url, auth={"token": token}, transports=transports)
        await c.close()

    arun(body())


def _upgrade_status(port: int, sid: str, origin: str) -> bytes:
    """Status line of a raw websocket upgrade of an existing polling session."""
    import base64
    import os
    import socket

    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\n"
               f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        return sock.recv(4096).split(b"\r\n", 1)[0]


def test_websocket_upgrade_checks_origin_too(gateway: GatewayProcess) -> None:
    """A session opened by polling from an allowed origin cannot be upgraded from a look-alike."""
    import json

    def open_session() -> str:
        req = urllib.request.Request(f"{gateway.url}/socket.io/?EIO=4&transport=polling",
                                     headers={"Origin": "http://localhost:3014"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read().decode()[1:])["sid"]

    assert b" 101 " in _upgrade_status(gateway.port, open_session(), "http://localhost:3014") + b" "
    for origin in ("http://localhost:3014.evil.com", "https://localhost:3014"):
        status = _upgrade_status(gateway.port, open_session(), origin)
        assert b" 101" not in status and b" 403" in status, (origin, status)


# -- wildcard entries: scheme://*.domain[:port] ------------------------------------------------------

WILDCARDS = "https://*.example.com,http://*.localhost:3000"
WILDCARD_MATCHES = [
    "https://app.example.com",
    "https://a.b.example.com",          # "*." is one or more labels
    "https://x-1.example.com",
    "http://app.localhost:3000",
    "http://deep.app.localhost:3000",
]
WILDCARD_LOOK_ALIKES = [
    "https://example.com",              # the bare apex: "*." needs at least one label
    "http://localhost:3000",
    "https://evilexample.com",          # glued to the domain
    "https://app.evilexample.com",
    "https://example.com.evil.test",    # the domain followed by another one
    "https://app.example.com.evil.test",
    "http://app.example.com",           # other scheme
    "https://app.example.com:444",      # a port the entry does not have
    "https://app.example.com:443",      # ... even the default one spelled out
    "http://app.localhost:3001",        # other port
    "http://app.localhost:30000",       # longer port
    "http://app.localhost",             # no port
    "https://app.example.com/",         # trailing slash
    "https://.example.com",             # empty label
    "https://-x.example.com",           # not a DNS label
    "https://APP.EXAMPLE.COM",          # browsers send lowercase hosts
    "https://*.example.com",            # the pattern itself is not an origin
    "null",
]


def test_origin_allowed_with_wildcard_entries_is_anchored() -> None:
    from realtime_conformance.gateway.origins import origin_allowed

    allowed = ("http://localhost:3014", *WILDCARDS.split(","))
    for origin in WILDCARD_MATCHES:
        assert origin_allowed(origin, allowed), origin
    for origin in WILDCARD_LOOK_ALIKES:
        assert not origin_allowed(origin, allowed), origin


@pytest.fixture(scope="module")
def wildcard_gateway(gateway_factory) -> GatewayProcess:
    return gateway_factory(ALLOWED_ORIGINS=f"http://localhost:3014,{WILDCARDS}")


def test_wildcard_entries_on_polling(wildcard_gateway: GatewayProcess) -> None:
    assert _raw_polling(wildcard_gateway.url, "http://localhost:3014") == 200
    for origin in WILDCARD_MATCHES:
        assert _raw_polling(wildcard_gateway.url, origin) == 200, origin
    for origin in WILDCARD_LOOK_ALIKES:
        assert _raw_polling(wildcard_gateway.url, origin) == 400, origin


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
def test_wildcard_entries_on_websocket(wildcard_gateway: GatewayProcess, transports: list[str]) -> None:
    async def body() -> None:
        token = mint("origin-wildcard-tenant")
        for origin in WILDCARD_MATCHES[:3]:
            c = Client()
            assert await c.connect(wildcard_gateway.url, auth={"token": token}, transports=transports,
                                   headers={"Origin": origin}), (origin, c.refusal)
            await c.close()
        for origin in ("https://evilexample.com", "https://example.com.evil.test", "https://example.com"):
            c = Client()
            assert not await c.connect(wildcard_gateway.url, auth={"token": token}, transports=transports,
                                       headers={"Origin": origin}), origin

    arun(body())


def test_wildcard_entry_checks_the_upgrade(wildcard_gateway: GatewayProcess) -> None:
    """A polling session from a matching subdomain cannot be upgraded from a look-alike of it."""
    import json

    def open_session() -> str:
        req = urllib.request.Request(f"{wildcard_gateway.url}/socket.io/?EIO=4&transport=polling",
                                     headers={"Origin": "https://app.example.com"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read().decode()[1:])["sid"]

    assert b" 101 " in _upgrade_status(wildcard_gateway.port, open_session(), "https://app.example.com") + b" "
    status = _upgrade_status(wildcard_gateway.port, open_session(), "https://app.evilexample.com")
    assert b" 101" not in status and b" 403" in status, status
