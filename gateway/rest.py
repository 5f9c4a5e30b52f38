"""The REST endpoints, as a tiny ASGI app (no web framework for five routes).

Every route but /health authenticates ``Authorization: Bearer <jwt>`` with the
very same ``auth.verify_token`` as the Socket.IO handshake, and answers only
for the token's tenant (ISO-4, REST-2). CORS follows the same exact-match
ALLOWED_ORIGINS policy as Socket.IO (ORIG-3): a listed origin's preflight is answered 204 with
the origin echoed and Authorization allowed by name (a ``*`` in Access-Control-Allow-Headers
never covers Authorization), an unlisted origin gets 403 and no CORS headers.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

from realtime_conformance import contract

from . import auth, origins
from .config import Settings
from .logs import log
from .metrics import MetricsPublisher
from .readmodel import ReadModel

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# What a preflight allows the actual request to carry. Authorization is named: the Fetch
# standard never lets a wildcard cover it. Read at call time: a patchable seam.
PREFLIGHT_ALLOW_HEADERS = "Authorization, Content-Type"


def cors_allowed(origin: str | None, allowed: tuple[str, ...] | list[str]) -> bool:
    """Whether a REST request from ``origin`` is served and answered with CORS headers. Patchable seam."""
    return origins.origin_allowed(origin, allowed)


class HttpError(Exception):
    def __init__(self, status: int, error: str, code: str) -> None:
        super().__init__(error)
        self.status, self.error, self.code = status, error, code


class RestApp:
    """ASGI app for the paths in ``contract.rest_paths()``."""

    def __init__(self, settings: Settings, readmodel: ReadModel, metrics: MetricsPublisher,
                 health: Callable[[], dict[str, Any]]) -> None:
        self.settings = settings
        self.readmodel = readmodel
        self.metrics = metrics
        self.health = health
        paths = contract.rest_paths()
        self._health = paths["health"]
        self._stats = paths["stats"]
        self._refresh = paths["refresh"]
        self._conversations = paths["conversations"]
        prefix, _, suffix = paths["messages"].partition("{conversationId}")
        self._messages_prefix, self._messages_suffix = prefix, suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # uvicorn's lifespan probe; the gateway wires its own start-up
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        origin = headers.get("origin")
        cors = self._cors_headers(origin)
        try:
            if origin and not cors_allowed(origin, self.settings.allowed_origins):
                raise HttpError(403, f"origin {origin} is not allowed", "origin_not_allowed")
            if scope["method"] == "OPTIONS":
                await self._respond(send, 204, None, cors + [
                    ("access-control-allow-methods", "GET, POST, OPTIONS"),
                    ("access-control-allow-headers", PREFLIGHT_ALLOW_HEADERS),
                    ("access-control-max-age", "600")])
                return
            status, body = await self._route(scope, headers)
        except HttpError as exc:
            status, body = exc.status, {"error": exc.error, "code": exc.code}
        except Exception as exc:
            log("rest handler failed", level=logging.ERROR, path=scope.get("path"), exc_info=True)
            status, body = 500, {"error": f"internal error: {type(exc).__name__}", "code": "internal"}
        await self._respond(send, status, body, cors)

    def _cors_headers(self, origin: str | None) -> list[tuple[str, str]]:
        if origin and cors_allowed(origin, self.settings.allowed_origins):
            return [("access-control-allow-origin", origin), ("access-control-allow-credentials", "true"),
                    ("vary", "Origin")]
        return [("vary", "Origin")]

    @staticmethod
    async def _respond(send: Send, status: int, body: Any, headers: list[tuple[str, str]]) -> None:
        payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        all_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        if body is not None:
            all_headers.append((b"content-type", b"application/json; charset=utf-8"))
        all_headers.append((b"content-length", str(len(payload)).encode()))
        all_headers.append((b"cache-control", b"no-store"))
        await send({"type": "http.response.start", "status": status, "headers": all_headers})
        await send({"type": "http.response.body", "body": payload})

    def _tenant(self, headers: dict[str, str]) -> str:
        """The tenant of the request's bearer token, or 401."""
        value = headers.get("authorization", "")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HttpError(401, "missing bearer token: send Authorization: Bearer <jwt>", auth.TOKEN_MISSING)
        try:
            return auth.verify_token(token.strip(), self.settings).tenant_id
        except auth.AuthError as exc:
            raise HttpError(401, exc.message, exc.code) from None

    async def _route(self, scope: Scope, headers: dict[str, str]) -> tuple[int, Any]:
        method = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = raw.decode("latin-1").split("?", 1)[0]

        def only(*methods: str) -> None:
            if method not in methods and not (method == "HEAD" and "GET" in methods):
                raise HttpError(405, f"method {method} not allowed on {path}", "method_not_allowed")

        if path == self._health:
            only("GET")
            return 200, self.health()
        if path == self._stats:
            only("GET")
            tenant = self._tenant(headers)
            return 200, await self.metrics.current(tenant, force=False)
        if path == self._refresh:
            only("POST")
            tenant = self._tenant(headers)
            return 200, await self.metrics.current(tenant, force=True)
        if path == self._conversations:
            only("GET")
            tenant = self._tenant(headers)
            return 200, self.readmodel.conversations(tenant)
        if (path.startswith(self._messages_prefix) and path.endswith(self._messages_suffix)
                and len(path) > len(self._messages_prefix) + len(self._messages_suffix)):
            segment = path[len(self._messages_prefix): len(path) - len(self._messages_suffix)]
            if "/" not in segment:
                only("GET")
                tenant = self._tenant(headers)
                conversation = unquote(segment)
                if not self.readmodel.has_conversation(tenant, conversation):
                    raise HttpError(404, "no such conversation", "not_found")
                return 200, self.readmodel.messages(tenant, conversation)
        raise HttpError(404, f"no route for {path}", "not_found")
