"""Where socket.io v4 servers put a refusal's machine-readable reason, read in one place.

The JS server sends a middleware's ``next(err)`` as ``{message, data: err.data}``, so the code is
``data.code``; python-socketio sends ``ConnectionRefusedError(message, {...})`` as
``{message, data: {...}}`` and a custom ``error_args`` as whatever it holds, often a top-level
``code``; with several arguments ``data`` is a list.
"""

from __future__ import annotations

from typing import Any, Mapping


def refusal_code(payload: Any) -> str | None:
    """The reason code of a ``connect_error`` payload, or None if it carries none."""
    if not isinstance(payload, Mapping):
        return None
    inner = payload.get("data")
    if isinstance(inner, list) and inner and isinstance(inner[0], Mapping):
        inner = inner[0]
    for source in (inner, payload):
        if isinstance(source, Mapping):
            code = source.get("code")
            if isinstance(code, str) and code:
                return code
    return None
