"""JSON-lines logs on stdout, one object per line, so log shippers need no parser.

``log(event, **fields)`` is the one call the gateway uses; uvicorn's and the
libraries' records go through the same formatter, and their tracebacks through a
rate limit (throttle.py: a client sending garbage must not flood the log, ROB-8).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from .throttle import ClientErrorThrottle

_LOGGER = logging.getLogger("gateway")
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    """Render a record as one JSON object: ts, level, logger, msg, plus extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_") and key != "color_message":
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str = "info") -> None:
    """Send every logger to stdout as JSON lines at ``level``."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLineFormatter())
    if level.lower() != "debug":  # at debug level every traceback is written
        handler.addFilter(ClientErrorThrottle())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "aio_pika", "aiormq"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # The AMQP libraries log every failed reconnect attempt at error level; the
    # consumer logs each one itself (with the retry delay), so keep theirs quiet.
    logging.getLogger("aio_pika").setLevel(logging.CRITICAL)
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)


def adopt(*names: str) -> None:
    """Route loggers that libraries gave their own stderr handler through the JSON formatter."""
    for name in names:
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True


def log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event: ``msg`` is the event text, ``fields`` become keys."""
    exc_info = fields.pop("exc_info", False)
    extra = {(f"{k}_" if k in _RESERVED else k): v for k, v in fields.items()}
    _LOGGER.log(level, event, exc_info=exc_info, extra=extra)
