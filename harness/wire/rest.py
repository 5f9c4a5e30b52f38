"""The gateway's REST API as the portal calls it: Bearer token, JSON answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import quote

import aiohttp


@dataclass(frozen=True)
class RestAnswer:
    """One HTTP answer with its headers: what CORS checks read. Header names are lowercase; a
    header sent more than once is joined with ", " (as a browser's header list combines it)."""

    status: int
    headers: Mapping[str, str]
    body: Any


class RestClient:
    """Calls the REST paths from the settings; returns (status, parsed JSON or text)."""

    def __init__(self, base_url: str, paths: Mapping[str, str], timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.paths = dict(paths)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "RestClient":
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def path(self, name: str, **params: str) -> str:
        path = self.paths[name]
        for key, value in params.items():
            path = path.replace("{" + key + "}", quote(value, safe=""))
        return path

    async def call(self, method: str, path: str, token: str | None = None,
                   headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        answer = await self.exchange(method, path, token, headers)
        return answer.status, answer.body

    async def exchange(self, method: str, path: str, token: str | None = None,
                       headers: Mapping[str, str] | None = None) -> RestAnswer:
        """One request, answered with status, headers and body (ORIG-3 reads the CORS headers)."""
        assert self._session is not None, "use `async with RestClient(...)`"
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self._session.request(method, self.base_url + path, headers=sent) as resp:
            text = await resp.text()
            try:
                body: Any = await resp.json(content_type=None) if text else None
            except ValueError:
                body = text
            seen: dict[str, list[str]] = {}
            for name, value in resp.headers.items():
                seen.setdefault(name.lower(), []).append(value)
            return RestAnswer(resp.status, {k: ", ".join(v) for k, v in seen.items()}, body)

    async def stats(self, token: str | None) -> tuple[int, Any]:
        return await self.call("GET", self.path("stats"), token)

    async def refresh(self, token: str | None) -> tuple[int, Any]:
        return await self.call("POST", self.path("refresh"), token)

    async def conversations(self, token: str | None) -> tuple[int, Any]:
        return await self.call("GET", self.path("conversations"), token)

    async def messages(self, token: str | None, conversation_id: str) -> tuple[int, Any]:
        return await self.call("GET", self.path("messages", conversationId=conversation_id), token)

    async def health(self) -> tuple[int, Any]:
        return await self.call("GET", self.path("health"))
