"""FaultProxy against a tiny loopback echo server: each mode does what the RECON/FAULT checks assume."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import pytest
import pytest_asyncio

from realtime_conformance.harness.wire.proxy import FaultProxy

pytestmark = pytest.mark.asyncio

WAIT = 2.0  # upper bound for anything that should happen "now"


@pytest_asyncio.fixture
async def echo() -> AsyncIterator[tuple[str, int]]:
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield ("127.0.0.1", int(server.sockets[0].getsockname()[1]))
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.wait_for(server.wait_closed(), WAIT)


@pytest_asyncio.fixture
async def proxy(echo: tuple[str, int]) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(*echo) as p:
        yield p


async def _open(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(*proxy.address), WAIT)


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> bytes:
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), WAIT)


async def test_pass_through_echoes_and_counts(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    try:
        assert await _roundtrip(reader, writer, b"hello") == b"hello"
        await proxy.wait_for_connections(1, WAIT)
        assert proxy.connections_total == 1 and proxy.open_connections == 1
        assert proxy.bytes_to_target == 5 and proxy.bytes_to_client == 5
        assert proxy.url_for() == f"http://127.0.0.1:{proxy.port}"
    finally:
        writer.close()


async def test_cut_closes_existing_and_refuses_new(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    await _roundtrip(reader, writer, b"x")
    proxy.cut()
    assert await asyncio.wait_for(reader.read(10), WAIT) == b""
    writer.close()
    reader2, writer2 = await _open(proxy)  # accepted, then closed at once
    try:
        assert await asyncio.wait_for(reader2.read(10), WAIT) == b""
    except ConnectionResetError:
        pass
    writer2.close()
    assert proxy.refused_total == 1
    proxy.pass_through()
    reader3, writer3 = await _open(proxy)
    assert await _roundtrip(reader3, writer3, b"back") == b"back"
    writer3.close()
    assert [label.split(" ")[0] for _, label in proxy.events][-2:] == ["cut", "pass_through"]


async def test_blackhole_forwards_nothing_then_new_connections_pass(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    await _roundtrip(reader, writer, b"x")
    proxy.blackhole()
    writer.write(b"lost")
    await writer.drain()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(10), 0.3)
    assert proxy.open_connections == 1  # kept open: a silent partition, not a close
    reader_new, writer_new = await _open(proxy)  # accepted during the partition, never forwarded
    writer_new.write(b"also lost")
    await writer_new.drain()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader_new.read(10), 0.2)
    assert proxy.bytes_dropped >= 4
    proxy.pass_through()
    # both connections lost bytes, so they are closed rather than resumed with a hole
    assert await asyncio.wait_for(reader.read(10), WAIT) == b""
    assert await asyncio.wait_for(reader_new.read(10), WAIT) == b""
    writer.close()
    writer_new.close()
    reader2, writer2 = await _open(proxy)
    assert await _roundtrip(reader2, writer2, b"again") == b"again"
    writer2.close()


async def test_latency_adds_at_least_the_delay_both_ways(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    await _roundtrip(reader, writer, b"warm")
    proxy.latency(0.1)
    started = time.monotonic()
    assert await _roundtrip(reader, writer, b"a") == b"a"
    elapsed = time.monotonic() - started
    assert elapsed >= 0.2  # 0.1 s to the target and 0.1 s back
    # order is kept across chunks sent back to back
    for chunk in (b"1", b"2", b"3"):
        writer.write(chunk)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(3), WAIT) == b"123"
    writer.close()


async def test_stall_holds_bytes_and_resumes(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    await _roundtrip(reader, writer, b"x")
    proxy.stall()
    writer.write(b"held")
    await writer.drain()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(10), 0.2)
    proxy.pass_through()
    assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"held"
    writer.close()


async def test_reset_sends_rst_then_passes(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    await _roundtrip(reader, writer, b"x")
    proxy.reset()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(10), WAIT)
    writer.close()
    assert proxy.mode == "pass_through"
    assert proxy.events[-1][1].startswith("reset (1 open")
    reader2, writer2 = await _open(proxy)
    assert await _roundtrip(reader2, writer2, b"ok") == b"ok"
    writer2.close()


async def test_wait_for_connections_is_bounded(proxy: FaultProxy) -> None:
    with pytest.raises(TimeoutError):
        await proxy.wait_for_connections(1, 0.1)


async def test_close_leaves_no_task_or_socket(echo: tuple[str, int]) -> None:
    before = set(asyncio.all_tasks())
    proxy = FaultProxy(*echo)
    await proxy.start()
    port = proxy.port
    clients = [await _open(proxy) for _ in range(3)]
    await proxy.wait_for_connections(3, WAIT)
    proxy.latency(0.05)
    await proxy.close()
    for reader, writer in clients:
        try:
            assert await asyncio.wait_for(reader.read(10), WAIT) == b""
        except ConnectionResetError:
            pass
        writer.close()
    assert proxy.open_connections == 0
    leftover = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert leftover == set()
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)


async def test_refuse_is_a_real_refusal_and_pass_through_listens_again_on_the_same_port(proxy):
    port = proxy.port
    proxy.refuse()
    await asyncio.sleep(0)  # let the listener close
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
    proxy.pass_through()
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
    writer.write(b"again")
    assert await asyncio.wait_for(reader.readexactly(5), WAIT) == b"again"
    writer.close()


def _frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + b"\x00\x01" + len(payload).to_bytes(4, "big") + payload + b"\xce"


START = _frame(1, b"\x00\x0a\x00\x0a" + b"s" * 30)  # connection.start
HEARTBEAT = _frame(8, b"")
DELIVER = _frame(1, b"\x00\x3c\x00\x3c" + b"d" * 12)  # basic.deliver
BODY = _frame(3, b"event")


async def test_amqp_frames_split_right_before_the_first_deliver_wherever_the_chunks_break() -> None:
    from realtime_conformance.harness.wire.proxy import AmqpFrames
    stream = START + HEARTBEAT + DELIVER + BODY
    for cut in range(1, len(stream)):
        frames = AmqpFrames()
        sent, held = frames.take(stream[:cut], hold=True)
        if held:  # what comes after a held delivery waits behind it
            held += stream[cut:]
        else:
            more, held = frames.take(stream[cut:], hold=True)
            sent += more
        assert (sent, held) == (START + HEARTBEAT, DELIVER + BODY), cut
        plain = AmqpFrames()
        assert b"".join(plain.take(part, hold=False)[0] for part in (stream[:cut], stream[cut:])) == stream


async def test_hold_deliveries_lets_the_handshake_through_and_holds_the_first_delivery_until_released():
    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(START)
        await reader.readexactly(4)  # the client's answer, then a delivery
        writer.write(HEARTBEAT + DELIVER + BODY)
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(broker, "127.0.0.1", 0)
    try:
        async with FaultProxy("127.0.0.1", int(server.sockets[0].getsockname()[1]), amqp=True) as link:
            link.hold_deliveries()
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
            assert await asyncio.wait_for(reader.readexactly(len(START)), WAIT) == START
            writer.write(b"ok!!")
            assert await asyncio.wait_for(reader.readexactly(len(HEARTBEAT)), WAIT) == HEARTBEAT
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.readexactly(1), 0.5)  # the delivery waits in the proxy
            link.pass_through()
            assert await asyncio.wait_for(reader.readexactly(len(DELIVER + BODY)), WAIT) == DELIVER + BODY
            writer.close()
    finally:
        server.close()


async def test_hold_deliveries_needs_an_amqp_proxy(proxy):
    with pytest.raises(ValueError, match="amqp=True"):
        proxy.hold_deliveries()
