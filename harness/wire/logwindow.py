"""What a gateway wrote to its log between two moments: records, bytes, tracebacks (ROB-8).

The report's log tail is the last 20 KB, enough to read why a check failed but not to
measure how much one input made the gateway write. Here the gateway's whole log (its file,
or ``docker logs`` for a container) is addressed by byte offsets taken before and after
each input, and what lies between is counted: records (non-empty lines: a JSON-lines logger
writes one per record), bytes, and the records that carry a stack trace. A traceback inside
one JSON record's field counts once; a plain-text traceback counts once, not once per line.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict, dataclass
from typing import Any

PYTHON_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
# A Node.js (V8) stack frame, on a line of its own or inside a JSON string ("\n    at f (/x.js:1:2)").
NODE_FRAME = re.compile(r"(?:^|\n|\\n)\s+at (?:[^\n()]*\()?(?:/|[A-Za-z]:\\|node:|file:)[^\n)]*:\d+:\d+")
POLL_S = 0.015


@dataclass(frozen=True)
class LogSlice:
    """A stretch of the log: how many records and bytes, how many tracebacks, and a sample."""

    records: int
    bytes: int
    tracebacks: int
    sample: str = ""  # the first record with a traceback, else the first record (cut short)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(data: bytes) -> LogSlice:
    """Count records, bytes and tracebacks in raw log bytes."""
    lines = [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]
    tracebacks, in_stack, sample = 0, False, ""
    for line in lines:
        python = len(PYTHON_TRACEBACK.findall(line))
        bare_frame = line.lstrip().startswith("at ") and bool(NODE_FRAME.search("\n" + line))
        node = not python and bool(NODE_FRAME.search(line))
        if python or (node and not (bare_frame and in_stack)):
            tracebacks += python or 1
            sample = sample or line[:600]
        in_stack = bool(python or node) or (in_stack and line.startswith((" ", "\t")))
    return LogSlice(records=len(lines), bytes=len(data), tracebacks=tracebacks,
                    sample=sample or (lines[0][:300] if lines else ""))


class GatewayLog:
    """Offsets into a gateway's whole log, for the gateways whose log the harness can read."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    @property
    def readable(self) -> bool:
        return self.offset() is not None

    def offset(self) -> int | None:
        """Bytes written so far (None when the log cannot be read: a URL target)."""
        size = getattr(self.gateway, "log_size", None)
        return size() if callable(size) else None

    def between(self, start: int, end: int) -> LogSlice:
        return measure(self.gateway.log_bytes(start, end))

    async def settled(self, quiet_s: float = 0.06, timeout_s: float = 1.0) -> int | None:
        """The offset once nothing has been written for ``quiet_s`` (bounded by ``timeout_s``): what
        an input makes the gateway log, it logs within moments of the connection's end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last = await asyncio.to_thread(self.offset)
        since = loop.time()
        while loop.time() < deadline:
            await asyncio.sleep(POLL_S)
            now = await asyncio.to_thread(self.offset)
            if now != last:
                last, since = now, loop.time()
            elif loop.time() - since >= quiet_s:
                break
        return last
