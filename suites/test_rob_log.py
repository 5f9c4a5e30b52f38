"""ROB-8: malformed input must not flood the gateway's log.

A gateway that survives garbage (ROB-1, ROB-2) can still be taken down slowly: if every bad
frame writes an ERROR with a full traceback, a client sending garbage in a loop fills the disk
or the log bill. Each class of ROB-1's and ROB-2's inputs is sent, one input at a time, on a
dedicated gateway, and each class that made it write a traceback is sent once more; the gateway's whole log is read between byte offsets taken before and
after each input (not the report's 20 KB tail), and its records, bytes and tracebacks counted.

Bounds, per input: at most MAX_RECORDS records and MAX_BYTES bytes (a connection's own open and
close lines, and one traceback the first time a class is seen, fit), and no traceback when a
class comes again: rate-limited or summarised logging passes, a traceback per frame does not.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest

from realtime_conformance.harness import GatewayLog, HandshakeFailed, RawWebSocket, exit_status

from .test_rob import _http_inputs, _own_gateway, packet_corpus, websocket_violations

pytestmark = [pytest.mark.realtime, pytest.mark.asyncio, pytest.mark.rob]

MAX_RECORDS = 10
MAX_BYTES = 8192
ROUNDS = 2  # the second round is the repeat: no class may bring its traceback again
CLOSE_LOOK_S = 0.03
# ROB-2 inputs that wait out a timeout of their own (1.5 s each) and log nothing another does not
SLOW_HTTP = {"HTTP: POST over the size limit", "HTTP: two long-polls at once on one sid"}  # how long each connection is watched for the server closing it, before ours closes


async def _frames(url: str, path: str, token: str, before: tuple, after: tuple) -> None:
    """One connection: frames instead of a CONNECT (``before``), or after a valid one (``after``)."""
    try:
        ws = await RawWebSocket.open(url, path=path, timeout=3.0)
    except (HandshakeFailed, OSError, asyncio.TimeoutError):
        return
    try:
        for item in before:
            await (ws.send_binary(item) if isinstance(item, bytes) else ws.send_text(item))
        if after:
            answer = await ws.socketio_connect({"token": token}, timeout=3.0)
            if answer is not None and answer.text.startswith("40"):
                for item in after:
                    await (ws.send_binary(item) if isinstance(item, bytes) else ws.send_text(item))
        await ws.closed(CLOSE_LOOK_S)
    finally:
        ws.abort()


async def _raw(url: str, path: str, data: bytes) -> None:
    try:
        ws = await RawWebSocket.open(url, path=path, timeout=3.0)
    except (HandshakeFailed, OSError, asyncio.TimeoutError):
        return
    try:
        await ws.send_bytes(data)
        await ws.closed(CLOSE_LOOK_S)
    finally:
        ws.abort()


async def _measured_inputs(gateway: Any, url: str, path: str, token: str, log: GatewayLog,
                           on_input: Callable[[str, int, int, bool], None], only: set[str] | None = None,
                           starts: list[int] | None = None) -> None:
    """Send each class once (those in ``only``, if given), handing its log offsets (before, after)
    to ``on_input``, and whether the gateway died of it. A gateway that dies (ROB-1's or ROB-2's
    finding, not this one's) is started again, so every other class is still measured; ``starts``
    counts those starts."""
    offset = await log.settled()

    async def measured(label: str, send: Awaitable[Any]) -> None:
        nonlocal offset
        if only is not None and label not in only or label in SLOW_HTTP:
            send.close()  # type: ignore[attr-defined]  # a coroutine never awaited
            return
        start = offset
        await send
        offset = await log.settled()
        died = exit_status(gateway) is not None
        on_input(label, start or 0, offset or 0, died)
        if died:
            await asyncio.to_thread(gateway.restart, hard=True)  # its start-up lines are nobody's input
            if starts is not None:
                starts.append(len(starts))
            offset = await log.settled()

    for packets in packet_corpus():
        await measured(packets.label, _frames(url, path, token, packets.before, packets.after))
    for label, data in websocket_violations():
        await measured(label, _raw(url, path, data))

    async def go(item, coro) -> None:
        nonlocal offset
        label = f"HTTP: {item.label}"
        if (only is None or label in only) and label not in SLOW_HTTP:
            offset = await log.settled()  # the HTTP corpus opens polling sessions of its own between inputs
        await measured(label, coro)
    await _http_inputs(go, url, path, crash_classes=False)


@pytest.mark.requirement("ROB-8")
async def test_malformed_input_does_not_flood_the_log(conformance):
    _own_gateway(conformance)
    async with conformance.target.dedicated("rob8") as instance, instance.scenario() as sc:
        log = GatewayLog(instance.gateway)
        if not log.readable:
            conformance.unknown("the gateway's log cannot be read here, so what malformed input makes it write is unknown")
        token = sc.tokens.valid(sc.tenant("rob8"))
        rows: list[dict[str, Any]] = []
        only: set[str] | None = None
        starts: list[int] = []  # restarts after a malformed input killed the gateway
        for round_ in range(ROUNDS):
            def on_input(label: str, start: int, end: int, died: bool) -> None:
                rows.append({"input": label, "round": round_ + 1, **log.between(start, end).as_dict(), "died": died,
                             "process": len(starts)})
            try:
                await _measured_inputs(instance.gateway, instance.url, conformance.settings.socketio_path, token, log,
                                       on_input, only, starts)
            except (RuntimeError, TimeoutError) as exc:
                conformance.unknown(f"the gateway died of a malformed input (ROB-1's or ROB-2's finding) and could not "
                                    f"be started again to go on: {exc}"[:500])
            # Sent again: the classes that wrote a traceback. A class that wrote none the first time
            # is not asked twice (its bounds were measured); one that did must not write it again.
            only = {r["input"] for r in rows if r["tracebacks"] and not r["died"]}
            if not only:
                break
        _judge(conformance, rows)


def _judge(conformance, all_rows: list[dict[str, Any]]) -> None:
    died = sorted({r["input"] for r in all_rows if r["died"]})
    rows = [r for r in all_rows if r["input"] not in died]  # what a dying gateway writes is ROB-1's business
    inputs = len(rows)
    records, size = sum(r["records"] for r in rows), sum(r["bytes"] for r in rows)
    conformance.record("bounds", {"records_per_input": MAX_RECORDS, "bytes_per_input": MAX_BYTES,
                                  "tracebacks_on_a_repeated_class": 0})
    conformance.record("totals", {
        "inputs": inputs, "records": records, "bytes": size, "tracebacks": sum(r["tracebacks"] for r in rows),
        "records_per_input": round(records / inputs, 2) if inputs else None,
        "bytes_per_input": round(size / inputs) if inputs else None,
        "max_records": max((r["records"] for r in rows), default=0),
        "max_bytes": max((r["bytes"] for r in rows), default=0)})
    conformance.record("per_input", [{k: v for k, v in r.items() if k != "sample" or r["tracebacks"]} for r in all_rows])
    if died:
        conformance.record("gateway_died_on", died)  # started again each time: see ROB-1, ROB-2
    if not rows:
        conformance.unknown("the gateway died of every malformed input, so what it logs for one is unknown: see ROB-1")
    violations = []
    over = [r for r in rows if r["records"] > MAX_RECORDS or r["bytes"] > MAX_BYTES]
    if over:
        worst = max(over, key=lambda r: r["bytes"])
        violations.append(conformance.violation(
            "Log flooded by one malformed input",
            f"{len(over)} of {inputs} malformed inputs each made the gateway write more than {MAX_RECORDS} records "
            f"or {MAX_BYTES} bytes; the most: {worst['input']!r}, {worst['records']} records, {worst['bytes']} bytes",
            {"inputs": [{k: r[k] for k in ("input", "round", "records", "bytes", "tracebacks")} for r in over][:10],
             "sample": worst["sample"]}))
    # A repeat is judged against its first send by the same process: a restart (after a crash) starts
    # any rate limit afresh.
    first_seen = {(r["input"], r["process"]) for r in rows if r["round"] == 1}
    again = [r for r in rows if r["round"] > 1 and (r["input"], r["process"]) in first_seen and r["tracebacks"]]
    unjudged = [r["input"] for r in rows if r["round"] > 1 and (r["input"], r["process"]) not in first_seen]
    if unjudged:
        conformance.record("repeats_not_judged", {"why": "the gateway was started again between the two sends "
                                                  "(a malformed input killed it)", "inputs": unjudged})
    if again:
        violations.append(conformance.violation(
            "A traceback per malformed input",
            f"{len(again)} malformed inputs wrote a stack trace again when their class was sent a second time "
            f"({sum(r['tracebacks'] for r in again)} tracebacks), e.g. {again[0]['input']!r}: the log grows by a "
            "traceback per bad frame (rate-limit or summarise them)",
            {"inputs": [r["input"] for r in again][:10], "sample": again[0]["sample"]}))
    conformance.fail(violations)
