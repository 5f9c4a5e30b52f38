"""Origin checks (ORIG-1, ORIG-2): exact string match against ALLOWED_ORIGINS.

No suffix, prefix, pattern or scheme-insensitive matching: ``http://localhost:3014.evil.com``,
``https://localhost:3014`` and ``http://localhost:30140`` are all different origins.
A request without an Origin header is not from a browser and is allowed; CORS
protects browsers, and non-browser clients can forge any header anyway.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """True when ``origin`` is absent or exactly one of ``allowed``. Patchable seam."""
    if origin is None or origin == "":
        return True
    return origin in allowed


def engineio_policy(allowed: Sequence[str]) -> Callable[..., bool]:
    """A ``cors_allowed_origins`` callable for python-engineio.

    Engine.IO calls it on every request (polling and the websocket upgrade) and
    answers 400 / closes the websocket when it returns False. It looks
    ``origin_allowed`` up at call time so a launcher's patch takes effect.
    """
    frozen = tuple(allowed)

    def policy(origin: str | None, environ: Any = None) -> bool:
        return origin_allowed(origin, frozen)

    return policy
