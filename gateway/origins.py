"""Origin checks (ORIG-1, ORIG-2): anchored matching against ALLOWED_ORIGINS.

An entry is an exact origin, ``scheme://host[:port]``, compared as a string: no suffix,
prefix or scheme-insensitive matching, so ``http://localhost:3014.evil.com``,
``https://localhost:3014`` and ``http://localhost:30140`` are all different origins.

An entry may also be a pattern ``scheme://*.domain[:port]``: ``*.`` stands for one or
more DNS labels (``app.example.com`` and ``a.b.example.com`` match ``https://*.example.com``),
and everything else is exact: the scheme, the port (absent in the entry means absent in the
Origin), and the rest of the host. The bare ``domain`` does not match (list it separately),
nor ``evilexample.com``, nor ``example.com.evil.io``. Labels are lowercase letters, digits
and inner hyphens, as browsers serialise them.

A request without an Origin header is not from a browser and is allowed; CORS
protects browsers, and non-browser clients can forge any header anyway.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Sequence

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"


@functools.lru_cache(maxsize=256)
def _pattern(entry: str) -> re.Pattern[str] | None:
    """The anchored regex of a ``scheme://*.domain[:port]`` entry; None for an exact entry."""
    scheme, sep, rest = entry.partition("://*.")
    if not sep:
        return None
    return re.compile(re.escape(scheme + "://") + f"(?:{_LABEL}\\.)+" + re.escape(rest))


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """True when ``origin`` is absent, exactly one of ``allowed``, or matched by a ``*.`` entry. Patchable seam."""
    if origin is None or origin == "":
        return True
    for entry in allowed:
        pattern = _pattern(entry)
        if (origin == entry) if pattern is None else pattern.fullmatch(origin) is not None:
            return True
    return False


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
