"""ROB: one malformed packet or request from one client must not take the gateway down, nor tell
the sender anything about its insides.

The inputs are our own, written from the public descriptions of advisories of the Socket.IO
stack (each one a crash of the whole server by one client): socket.io < 4.6.2, CVE-2024-38355
(a client event named ``error``); socket.io-parser CVE-2023-32695 and CVE-2022-2421 (binary
attachment placeholders); engine.io CVE-2023-31125, CVE-2022-41940, CVE-2022-21676 (crafted
polling and upgrade requests); ws CVE-2024-37890 (a request with very many headers). Hypothesis
adds frames drawn from the framing grammar.

Every check here may crash its gateway, so each runs on a dedicated instance; against a URL
target there is none to spare, and they are N/A. The bystander (``Liveness``) is a client of a
tenant of its own that receives paced events throughout: that, a fresh handshake afterwards,
and the process's exit status decide whether the gateway survived.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from realtime_conformance.harness import (
    NA_PREFIX, HandshakeFailed, Liveness, RawResponse, RawWebSocket, exit_status, http_request, rawclient, send_raw,
    strategies)

ws_frame = rawclient.frame
BINARY, CLOSE, CONT, PING, TEXT = rawclient.BINARY, rawclient.CLOSE, rawclient.CONT, rawclient.PING, rawclient.TEXT

pytestmark = [pytest.mark.realtime, pytest.mark.asyncio, pytest.mark.rob]

SETTLE_S = 0.1  # how long each input's connection is watched for the server closing it
EXIT_WAIT_S = 0.5  # after a connection the server closed: how long a dying process is given to exit


def _own_gateway(conformance) -> None:
    """N/A unless the harness starts the gateway: a crash check never runs against the only one there is."""
    if conformance.settings.target_kind == "url":
        pytest.skip(NA_PREFIX + "needs a gateway the harness starts (a crash here would take down the only "
                    "gateway there is and every later check with it)")


# -- ROB-1: packets --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Packets:
    """Frames sent on one WebSocket connection: ``before`` instead of a CONNECT, ``after`` once connected."""

    label: str
    after: tuple[str | bytes, ...] = ()
    before: tuple[str | bytes, ...] = ()
    source: str = ""


def packet_corpus() -> list[Packets]:
    """Malformed Socket.IO and Engine.IO packets, one class per entry."""
    P = Packets
    return [
        P("unknown Engine.IO packet types", ("9", "x", "7hello", "")),
        P("unknown Socket.IO packet types", ("47[]", "49", "4x", "4")),
        P("truncated JSON", ('42["ev"', "42[", '42{"a":', '42["ev",{"a":[1,2')),
        P("invalid JSON", ("42[nope]", "42[\u0000]", '42["ev",NaN]', "42[1e99999]", '42["\\ud800"]')),
        P("non-array event payloads", ('42"str"', "42{}", "421", "42null", "42[]", "42[1]", "42[null]", '42[{"a":1}]')),
        P("reserved event name: error", ('42["error","boom"]', '42["error"]'), source="CVE-2024-38355 (socket.io < 4.6.2)"),
        P("reserved event names: connect, connect_error",
          ('42["connect"]', '42["connect",{},{"token":"x"}]', '42["connect_error",{"message":"x"}]')),
        P("reserved event names: disconnect, disconnecting",
          ('42["disconnecting","x"]', '42["disconnect"]')),
        P("reserved event name: newListener", ('42["newListener","x"]', '42["removeListener","x"]')),
        P("attachment placeholder out of range",
          ('451-["ev",{"_placeholder":true,"num":5}]', b"\x01\x02"), source="socket.io-parser CVE-2023-32695, CVE-2022-2421"),
        P("attachment placeholder not numeric",
          ('451-["ev",{"_placeholder":true,"num":"0"}]', b"\x01"), source="socket.io-parser CVE-2023-32695"),
        P("attachment placeholder with an object num",
          ('451-["ev",{"_placeholder":true,"num":{"length":1}}]', b"\x01"), source="socket.io-parser CVE-2022-2421"),
        P("attachment placeholder negative",
          ('451-["ev",{"_placeholder":true,"num":-1}]', b"\x01")),
        P("attachments that never arrive", ('453-["ev",{"_placeholder":true,"num":0}]', b"\x01")),
        P("absurd attachment counts", ("4599999999999999999999-[\"ev\"]", "45-[\"ev\"]", "45x-[\"ev\"]")),
        P("binary frames where text is expected", (b"\x00\xff\xfe", b"4", b"")),
        P("binary frame before the CONNECT", before=(b"\x00\xff",)),
        P("unknown namespaces", ('40/nope,{}', '42/nope,["ev"]', "40/", "41/nope,")),
        P("malformed CONNECT packets",
          before=('40{"token":', "40[]", '40"x"', '40{"token":{"$ne":null}}', "40{\"token\":" + '"x' * 2000)),
        P("acks for ids never sent", ('43999["x"]', "431[]", "4399999999999999999999999[]")),
        P("Engine.IO upgrade packets on a websocket", ("5", "6", "3probe", "2probe")),
    ]


async def _send_packets(url: str, path: str, token: str, packets: Packets) -> dict[str, Any]:
    """Send one entry on a fresh connection; what the server did with it."""
    try:
        ws = await RawWebSocket.open(url, path=path, timeout=3.0)
    except (HandshakeFailed, OSError, asyncio.TimeoutError) as exc:
        return {"input": packets.label, "outcome": f"no connection: {exc}"}
    try:
        for item in packets.before:
            await (ws.send_binary(item) if isinstance(item, bytes) else ws.send_text(item))
        if packets.after:
            answer = await ws.socketio_connect({"token": token}, timeout=3.0)
            if answer is None or not answer.text.startswith("40"):
                return {"input": packets.label, "outcome": "CONNECT with a valid token not accepted",
                        "answer": answer.text if answer else None}
            for item in packets.after:
                await (ws.send_binary(item) if isinstance(item, bytes) else ws.send_text(item))
        closed = await ws.closed(SETTLE_S)
        return {"input": packets.label, "outcome": "closed by the server" if closed else "left open"}
    finally:
        ws.abort()


def _crash(conformance, alive: Liveness, what: str) -> None:
    report = alive.report
    conformance.record("liveness", report.evidence())
    conformance.fail([conformance.violation(
        "Gateway died", f"the gateway process exited with status {report.exit_status} {what}",
        {"exit_status": report.exit_status, "log_tail": report.log_tail})])


async def _judge_liveness(conformance, alive: Liveness, sent: list[str]) -> None:
    """FAIL if the gateway died, stopped delivering to the bystander, or refuses new clients;
    UNKNOWN if deliveries were only late (DLV-2's business, unless the gateway died)."""
    report = await alive.finish()
    conformance.record("liveness", report.evidence())
    conformance.record("inputs_sent", sent)
    conformance.record("bystander_p99_ms", report.p99_ms)
    conformance.record("gateway_log_lines_during_inputs", report.log_lines)
    if report.exit_status is not None:
        _crash(conformance, alive, f"after these inputs: {', '.join(sent[-3:])}")
    violations = []
    if report.missing:
        violations.append(conformance.violation(
            "Bystander stopped receiving", f"{len(report.missing)} of {report.published} paced events to another "
            f"tenant's client never arrived while and after malformed input was sent (last inputs: {', '.join(sent[-3:])})",
            report.evidence()))
    if report.fresh_handshake is False:
        violations.append(conformance.violation(
            "Fresh handshake failed", "after the malformed input, a new client with a valid token could not connect "
            "and receive an event", report.evidence()))
    conformance.fail(violations)
    if report.pending:
        conformance.unknown(f"still arriving: {len(report.pending)} of the bystander's events had not arrived when "
                            "deliveries stopped, and nothing published after them had either, so late cannot be "
                            "told from lost: see DLV-2")
    if report.late:
        conformance.unknown(f"the bystander's events arrived, {report.late} of them over the latency budget "
                            f"(p99 {report.p99_ms} ms): slow under malformed input, or slow anyway, see DLV-2")


async def _run_packets(conformance, label: str, corpus: list[Packets]) -> None:
    async with conformance.target.dedicated(label) as instance, instance.scenario() as sc:
        path = conformance.settings.socketio_path
        async with Liveness(sc, instance.gateway) as alive:
            token = sc.tokens.valid(sc.tenant("rob"))
            sent, outcomes = [], []
            for index, packets in enumerate(corpus):
                t0 = time.perf_counter()
                outcomes.append(await _send_packets(instance.url, path, token, packets))
                outcomes[-1]["ms"] = round((time.perf_counter() - t0) * 1000)
                sent.append(packets.label)
                closed = outcomes[-1]["outcome"] != "left open"
                if await alive.exited_within(EXIT_WAIT_S if closed else 0.0) is not None:
                    await alive.finish()
                    conformance.record("outcomes", outcomes)
                    # Found dead when this input could not even connect: the previous one did it.
                    late = outcomes[-1]["outcome"].startswith("no connection") and index > 0
                    culprit = corpus[index - 1] if late else packets
                    _crash(conformance, alive, f"on input {culprit.label!r}: {list(culprit.before + culprit.after)!r:.300}"
                           + (f" (the class of {culprit.source})" if culprit.source else "")
                           + (" (found dead when the next input could not connect)" if late else ""))
            conformance.record("outcomes", outcomes)
            refused = [o for o in outcomes if o["outcome"].startswith(("no connection", "CONNECT with a valid"))]
            await _judge_liveness(conformance, alive, sent)
            if refused:
                conformance.unknown(f"{len(refused)} input(s) could not be delivered because a valid client "
                                    f"was not accepted first ({refused[0]}): see CONN-1, AUTH-1")


@pytest.mark.requirement("ROB-1")
async def test_malformed_packets_never_stop_the_gateway(conformance):
    _own_gateway(conformance)
    await _run_packets(conformance, "rob1", packet_corpus())


GENERATED_BATCH = 25


@pytest.mark.requirement("ROB-1")
# Each example starts a dedicated gateway (a few seconds): bounded at 2, whatever the gate level.
@hypothesis_settings(max_examples=min(hypothesis_settings.default.max_examples, 2), deadline=None)
@given(frames=st.lists(st.one_of(strategies.engineio_text_frames(), strategies.noise_frames()),
                       min_size=GENERATED_BATCH, max_size=GENERATED_BATCH))
async def test_generated_frames_never_stop_the_gateway(conformance, frames):
    """Frames drawn from the framing grammar, one connection each batch of five (a dedicated gateway
    per example, so a shrinking run starts each example from a fresh one)."""
    _own_gateway(conformance)
    batches = [Packets(f"generated {n}: {frames[n:n + 5]!r:.200}", tuple(frames[n:n + 5]))
               for n in range(0, len(frames), 5)]
    await _run_packets(conformance, "rob1g", batches)


# -- ROB-2: HTTP and WebSocket ---------------------------------------------------------------------

@dataclass
class HttpInput:
    label: str
    must_refuse: bool = True  # a clean 4xx (or a close) is the only right answer
    source: str = ""
    outcome: dict[str, Any] = field(default_factory=dict)


async def _polling_sid(url: str, path: str) -> str | None:
    """An Engine.IO polling session opened by hand (no Socket.IO CONNECT needed)."""
    got = await http_request(url, "GET", f"{path}?EIO=4&transport=polling", timeout=3.0)
    text = got.text
    if got.status == 200 and "0{" in text:
        try:
            return json.loads(text[text.index("0{") + 1:].split("\x1e")[0]).get("sid")
        except ValueError:
            return None
    return None


def _shown(response: RawResponse) -> dict[str, Any]:
    return {"answer": response.describe(), "body": response.text[:200]}


async def _http_corpus(url: str, path: str, *, crash_classes: bool = True,
                       alive: Liveness | None = None) -> list[tuple[HttpInput, RawResponse]]:
    """Each malformed request on a fresh connection, in order, and what it was answered. Without
    ``crash_classes``, the inputs that reset a connection or overflow headers are left out (ROB-3
    reads answers; whether those inputs crash the gateway is ROB-2's business)."""
    out: list[tuple[HttpInput, RawResponse]] = []

    class Died(Exception):
        pass

    async def go(item: HttpInput, coro) -> None:
        out.append((item, await coro))
        answer = out[-1][1]
        if alive is not None and await alive.exited_within(EXIT_WAIT_S if answer.closed else 0.0) is not None:
            raise Died  # the rest would only meet a closed port; the culprit is the last input

    try:
        await _http_inputs(go, url, path, crash_classes)
    except Died:
        pass
    return out


async def _http_inputs(go, url: str, path: str, crash_classes: bool) -> None:
    """The ROB-2 HTTP inputs, each handed to ``go`` (which sends it and records the answer)."""

    q = f"{path}?"
    await go(HttpInput("missing EIO"), http_request(url, "GET", q + "transport=polling"))
    for eio in ("3", "5", "abc", "", "4.0", "99999999999999999999"):
        await go(HttpInput(f"EIO={eio!r}"), http_request(url, "GET", q + f"EIO={eio}&transport=polling"))
    await go(HttpInput("missing transport", must_refuse=False), http_request(url, "GET", q + "EIO=4"))
    for transport in ("flashsocket", "", "polling%00", "websocket,polling"):
        # An empty transport may default to polling, as a missing one does; the others are unknown.
        await go(HttpInput(f"transport={transport!r}", must_refuse=bool(transport)), http_request(url, "GET", q + f"EIO=4&transport={transport}"))
    await go(HttpInput("unknown sid (GET)", source="engine.io CVE-2022-21676 class"),
             http_request(url, "GET", q + "EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA"))
    await go(HttpInput("unknown sid (POST)"),
             http_request(url, "POST", q + "EIO=4&transport=polling&sid=nope", body=b"4hello"))
    await go(HttpInput("sid of many kinds"), http_request(url, "GET", q + "EIO=4&transport=polling&sid=a&sid=b"))
    await go(HttpInput("percent-garbage query"), http_request(url, "GET", q + "EIO=%ff%fe&transport=%zz&sid=%"))
    await go(HttpInput("unknown method", must_refuse=False), http_request(url, "BREW", q + "EIO=4&transport=polling"))
    sid = await _polling_sid(url, path)
    if sid:
        s = q + f"EIO=4&transport=polling&sid={sid}"
        await go(HttpInput("POST garbage body", must_refuse=False, source="engine.io CVE-2022-41940 class"),
                 http_request(url, "POST", s, body=b"\xff\xfe\x00\x01garbage\x1e\x1e", headers={"Content-Type": "text/plain"}))
        sid = await _polling_sid(url, path) or sid
        s = q + f"EIO=4&transport=polling&sid={sid}"
        await go(HttpInput("POST a packet of an unknown type", must_refuse=False),
                 http_request(url, "POST", s, body=b"9\x1e9x\x1e"))
        sid = await _polling_sid(url, path) or sid
        s = q + f"EIO=4&transport=polling&sid={sid}"
        await go(HttpInput("POST Content-Length not a number"),
                 send_raw(url, f"POST {s} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nConnection: close\r\n\r\n4x".encode()))
        if crash_classes:
            await go(HttpInput("POST truncated body, then reset", must_refuse=False, source="engine.io CVE-2023-31125 class"),
                     http_request(url, "POST", s, body=b"4hel", content_length=4096, then_reset=True))
        await go(HttpInput("POST over the size limit", must_refuse=False),
                 http_request(url, "POST", s, body=b"4" + b"x" * 200_000, timeout=1.5))
        sid = await _polling_sid(url, path) or sid
        s = q + f"EIO=4&transport=polling&sid={sid}"
        async def second_of_two() -> RawResponse:
            return (await asyncio.gather(http_request(url, "GET", s, timeout=1.5),
                                         http_request(url, "GET", s, timeout=1.5)))[1]
        await go(HttpInput("two long-polls at once on one sid", must_refuse=False), second_of_two())
    ws_headers = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    wq = q + "EIO=4&transport=websocket"
    await go(HttpInput("upgrade with a bad version"), send_raw(url, (
        f"GET {wq} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 99\r\n{key}\r\n").encode()))
    await go(HttpInput("upgrade without a key", must_refuse=False), send_raw(url, f"GET {wq} HTTP/1.1\r\nHost: x\r\n{ws_headers}\r\n".encode()))
    await go(HttpInput("not HTTP at all (a TLS ClientHello)"),
             send_raw(url, bytes.fromhex("16030100a5010000a10303") + b"\x00" * 64))
    # An HTTP/0.9-style request line: Node.js answers it as a GET, which is no crash and no leak.
    await go(HttpInput("request line without a version", must_refuse=False), send_raw(url, f"GET {q}EIO=4&transport=polling\r\n\r\n".encode()))
    if not crash_classes:
        return
    many = "".join(f"X-Filler-{n}: {n}\r\n" for n in range(3000))
    await go(HttpInput("upgrade with 3000 headers", source="ws CVE-2024-37890 class"),
             send_raw(url, f"GET {wq} HTTP/1.1\r\nHost: x\r\n{ws_headers}{key}{many}\r\n".encode()))
    await go(HttpInput("a 100 kB header", must_refuse=True),
             send_raw(url, f"GET {wq} HTTP/1.1\r\nHost: x\r\n{ws_headers}{key}X-Big: {'a' * 100_000}\r\n\r\n".encode()))
    await go(HttpInput("upgrade cut mid-headers, then reset", must_refuse=False),
             send_raw(url, f"GET {wq} HTTP/1.1\r\nHost: x\r\n{ws_headers}Sec-WebSocket-Ke".encode(), then_reset=True))
    await go(HttpInput("complete upgrade, reset before the answer", must_refuse=False),
             send_raw(url, f"GET {wq} HTTP/1.1\r\nHost: x\r\n{ws_headers}{key}\r\n".encode(), then_reset=True))


def websocket_violations() -> list[tuple[str, bytes]]:
    """Frames that break RFC 6455, of the kinds Autobahn|Testsuite sends (each after an Engine.IO open)."""
    return [
        ("invalid UTF-8 in a text frame", ws_frame(TEXT, b"4\xff\xfe\xfd")),
        ("reserved bits set", ws_frame(TEXT, b"2", rsv=7)),
        ("unknown data opcode 0x3", ws_frame(0x3, b"4x")),
        ("unknown control opcode 0xB", ws_frame(0xB, b"")),
        ("fragmented ping", ws_frame(PING, b"a", fin=False)),
        ("control frame over 125 bytes", ws_frame(PING, b"p" * 200)),
        ("continuation with nothing to continue", ws_frame(CONT, b"4x")),
        ("unmasked client frame", ws_frame(TEXT, b"4x", mask=False)),
        ("close with an invalid code", ws_frame(CLOSE, b"\x03\xe7bad")),
        ("close with a one-byte body", ws_frame(CLOSE, b"\x03")),
        ("frame claiming 2^62 bytes", ws_frame(BINARY, b"xx", length=1 << 62)),
        ("text frame interrupted by another text frame", ws_frame(TEXT, b"4", fin=False) + ws_frame(TEXT, b"x")),
    ]


async def _websocket_violation(url: str, path: str, label: str, data: bytes) -> dict[str, Any]:
    try:
        ws = await RawWebSocket.open(url, path=path, timeout=3.0)
    except (HandshakeFailed, OSError, asyncio.TimeoutError) as exc:
        return {"input": label, "outcome": f"no connection: {exc}"}
    try:
        await ws.send_bytes(data)
        closed = await ws.closed(SETTLE_S)
        close = ws.closed_by_server
        return {"input": label, "outcome": "closed by the server" if closed else "left open",
                "close_code": close.close_code if close else None, "close_reason": close.close_reason if close else ""}
    finally:
        ws.abort()


@pytest.mark.requirement("ROB-2")
async def test_malformed_http_and_websocket_never_stop_the_gateway(conformance):
    _own_gateway(conformance)
    async with conformance.target.dedicated("rob2") as instance, instance.scenario() as sc:
        path = conformance.settings.socketio_path
        async with Liveness(sc, instance.gateway) as alive:
            answers = await _http_corpus(instance.url, path, alive=alive)
            sent = [item.label for item, _ in answers]
            frames = []
            for label, data in websocket_violations():
                if alive.exited() is not None:
                    break
                frames.append(await _websocket_violation(instance.url, path, label, data))
                sent.append(label)
                # A close is the expected answer to every one of these: a short look, not EXIT_WAIT_S each.
                await alive.exited_within(0.1 if frames[-1]["outcome"] != "left open" else 0.0)
            conformance.record("http_answers", {item.label: _shown(r) for item, r in answers})
            conformance.record("websocket_outcomes", frames)
            if alive.exited() is not None:
                await alive.finish()
                culprit = answers[-1][0] if not frames else None
                what = (f"{culprit.label!r}" + (f" (the class of {culprit.source})" if culprit.source else "")
                        if culprit is not None else repr(sent[-1]))
                _crash(conformance, alive, f"on input {what}")
            violations = [conformance.violation(
                "Server error on malformed input", f"{item.label}: answered {r.describe()} (a 4xx or a close is the "
                "right answer)", {"input": item.label, **_shown(r), "source": item.source})
                for item, r in answers if r.status is not None and r.status >= 500]
            violations += [conformance.violation(
                "Malformed request accepted", f"{item.label}: answered {r.describe()} where a 4xx is due",
                {"input": item.label, **_shown(r)})
                for item, r in answers if item.must_refuse and r.status is not None and r.status < 400]
            await _judge_liveness(conformance, alive, sent)
            conformance.fail(violations)


# -- ROB-3: what errors reveal ---------------------------------------------------------------------

def leak_patterns(conformance, instance) -> dict[str, re.Pattern[str]]:
    """What no error may contain, learned from this run's own settings."""
    patterns = {
        "a Python traceback": re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+"),
        "a Node.js stack frame": re.compile(r"\n\s+at [^\n]+\((?:/|[A-Za-z]:\\)[^\n]+:\d+:\d+\)"),
        "an installed package path": re.compile(r"site-packages|node_modules/"),
    }
    secret = conformance.settings.jwt_secret
    if secret and len(secret) >= 8:
        patterns["the JWT secret"] = re.compile(re.escape(secret))
    amqp = urlsplit(instance.amqp_url)
    patterns["the AMQP URL"] = re.compile(re.escape(f"{amqp.hostname}:{amqp.port}") + "|amqps?://", re.I)
    if amqp.password and len(amqp.password) >= 6:
        patterns["the AMQP password"] = re.compile(re.escape(amqp.password))
    cwd = conformance.settings.gateway_cwd
    if cwd and len(cwd) > 4 and cwd not in ("/", "."):
        patterns["the gateway's folder"] = re.compile(re.escape(str(cwd).rstrip("/")) + "/")
    return patterns


async def _refusals(url: str, path: str, sc) -> list[tuple[str, str]]:
    """CONNECT_ERROR packets for bad handshakes, as text."""
    tokens = sc.tokens
    tenant = sc.tenant("rob3")
    valid = tokens.valid(tenant)
    cases: list[tuple[str, Any]] = [
        ("no auth", None), ("empty auth", {}), ("token not a string", {"token": {"$ne": None}}),
        ("token a number", {"token": 1e308}), ("garbage token", {"token": "a.b.c"}),
        ("truncated token", {"token": valid[: len(valid) // 2]}),
        ("token with a bad signature", {"token": valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")}),
        ("token of 20 kB", {"token": "x" * 20_000}),
        ("auth a list", ["token", valid]),
    ]
    out = []
    for label, auth in cases:
        try:
            async with RawWebSocket.connect(url, path=path, timeout=3.0) as ws:
                answer = await ws.socketio_connect(auth, timeout=3.0)
                out.append((f"connect_error: {label}", answer.text if answer else ""))
        except (HandshakeFailed, OSError, asyncio.TimeoutError) as exc:
            out.append((f"connect_error: {label}", f"(no connection: {exc})"))
    for label, raw in (("CONNECT with invalid JSON", '40{"token":'), ("CONNECT to an unknown namespace", "40/nope,{}")):
        async with RawWebSocket.connect(url, path=path, timeout=3.0) as ws:
            await ws.send_text(raw)
            got = await ws.recv(1.0)
            out.append((f"answer to {label}", got.text if got else ""))
    return out


async def _rest_errors(url: str, paths) -> list[tuple[str, str]]:
    out = []
    for name in ("stats", "conversations"):
        target = paths.get(name) if hasattr(paths, "get") else None
        if not target:
            continue
        for label, header in (("garbage bearer", "Bearer \x7f\x01garbage"), ("no scheme", "x.y.z"),
                              ("huge bearer", "Bearer " + "A" * 30_000)):
            r = await http_request(url, "GET", target.replace("{conversationId}", "%ff%00"),
                                   headers={"Authorization": header})
            out.append((f"REST {name}: {label}", f"{r.describe()} {r.text[:4000]}"))
    return out


@pytest.mark.requirement("ROB-3")
async def test_errors_leak_nothing(conformance):
    _own_gateway(conformance)
    async with conformance.target.dedicated("rob3") as instance, instance.scenario() as sc:
        path = conformance.settings.socketio_path
        texts = await _refusals(instance.url, path, sc)
        for item, r in await _http_corpus(instance.url, path, crash_classes=False):
            texts.append((f"HTTP: {item.label}", f"{r.describe()} {r.text[:4000]}"))
        for label, data in websocket_violations():
            got = await _websocket_violation(instance.url, path, label, data)
            texts.append((f"close reason: {label}", got.get("close_reason", "")))
        texts += await _rest_errors(instance.url, conformance.settings.rest_paths)
        status = exit_status(instance.gateway)
        conformance.record("answers_read", len(texts))
        if status is not None:
            conformance.unknown(f"the gateway exited (status {status}) while its errors were being read, so what "
                                "the rest would have said is unknown: see ROB-1, ROB-2")
        violations = []
        for what, pattern in leak_patterns(conformance, instance).items():
            hits = [(label, text) for label, text in texts if pattern.search(text)]
            if hits:
                label, text = hits[0]
                match = pattern.search(text)
                assert match is not None
                start = max(0, match.start() - 80)
                violations.append(conformance.violation(
                    f"Error reveals {what}", f"{len(hits)} answer(s) contain {what}; first: {label}",
                    {"input": label, "excerpt": "<redacted: the secret itself>" if "secret" in what or "password" in what
                     else text[start:match.end() + 80], "answers": [h[0] for h in hits][:10]}))
        conformance.fail(violations)
