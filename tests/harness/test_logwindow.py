"""Counting what a gateway logged between two offsets (ROB-8): records, bytes, tracebacks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from realtime_conformance.harness.providers.processes import ManagedProcess
from realtime_conformance.harness.wire.logwindow import GatewayLog, measure


def test_a_traceback_in_a_json_field_counts_once():
    data = b'{"msg": "ok"}\n{"msg": "boom", "exc": "Traceback (most recent call last):\\n  File \\"x\\", line 1"}\n'
    got = measure(data)
    assert (got.records, got.bytes, got.tracebacks) == (2, len(data), 1)
    assert "Traceback" in got.sample


def test_plain_text_stacks_count_once_each():
    node = b"TypeError: x\n    at f (/srv/a.js:1:2)\n    at g (node:internal/x:3:4)\nnext line\n"
    python = b"Traceback (most recent call last):\n  File \"x\", line 1, in f\nValueError: x\n"
    assert measure(node).tracebacks == 1 and measure(node).records == 4
    assert measure(python).tracebacks == 1
    assert measure(b'{"stack": "Error: x\\n    at f (/a/b.js:1:2)"}\n').tracebacks == 1
    assert measure(b"GET /x at 12:30:45\n").tracebacks == 0


class _FileGateway:
    def __init__(self, path: Path) -> None:
        self._process = ManagedProcess(["true"], name="gw", log_path=path)

    def log_size(self) -> int:
        return self._process.log_size()

    def log_bytes(self, start: int, end: int | None = None) -> bytes:
        return self._process.log_range(start, end)


def test_offsets_address_the_whole_file(tmp_path):
    path = tmp_path / "gw.log"
    path.write_bytes(b"x" * 50_000 + b"\n")  # longer than any tail
    log = GatewayLog(_FileGateway(path))
    start = asyncio.run(log.settled(quiet_s=0.02, timeout_s=0.2))
    with path.open("ab") as f:
        f.write(b'{"msg": "one"}\n{"msg": "two"}\n')
    end = log.offset()
    assert start == 50_001 and log.between(start, end).records == 2
    assert GatewayLog(object()).readable is False
