"""One agent-portal browser tab, emulated: the seed's SocketContext plus React Query.

The harness judges gateways by what the portal would experience, so this tab
behaves as the seed's frontend does rather than as a well-behaved client:

* socket.io-client v4 reconnection (exact backoff and jitter, ``attempts`` then
  ``reconnect_failed``; no auto-reconnect after an "io server disconnect"),
  a fresh token from ``token_provider`` on every (re)connect;
* socket.io-client v4 connection state recovery: the session id and last offset are kept
  for the tab's life and presented on every reconnect; whether the gateway resumed the
  session is recorded per attempt (``recovered``);
* the seed's invalidation map, where every invalidation of a mounted query
  refetches it over REST at once. That includes metrics_update ->
  ['dashboard-metrics'] -> GET stats, which loops against a gateway that
  emits metrics_update on every stats request (MET-3).

Deliberate simplifications: one fetch in flight per key, with one more after
it when invalidated meanwhile (React Query would cancel and restart); a
refused CONNECT (middleware refusal) counts as a failed reconnect attempt and
the backoff carries on, where socket.io-client would stop and leave the retry
to the app (the seed's "token refresh handling"); it opens a websocket from the first packet, where
socket.io-client starts on polling and upgrades (polling is CONN-2's to judge); and its REST is not
a browser's: no Origin, no preflight, no CORS (ORIG-3 and the browser checks judge those).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import quote

import aiohttp
import socketio

from realtime_conformance import contract
from realtime_conformance.harness.wire.clients import RecoveringClient, RecoverySession, Withheld

QueryKey = tuple[Any, ...]
DEFAULT_QUERIES: frozenset[QueryKey] = frozenset({("conversations",), ("dashboard-metrics",)})
STATES = ("connecting", "live", "warning", "failed", "closed")

# socket.io-client v4 names for why a socket went away
IO_SERVER_DISCONNECT = "io server disconnect"
TRANSPORT_CLOSE = "transport close"
TRANSPORT_ERROR = "transport error"


@dataclass(frozen=True)
class ReconnectPolicy:
    """socket.io-client v4 reconnection options, in seconds (the portal's are the defaults)."""

    attempts: int = 5
    delay: float = 1.0
    delay_max: float = 5.0
    randomization: float = 0.5
    attempt_timeout: float = 20.0  # socket.io-client ``timeout``: one attempt's budget

    def delay_ms(self, n: int, r: float) -> int:
        """The delay before attempt ``n`` (1-based) for the random draw ``r``, as backo2 computes it."""
        ms = self.delay * 1000.0 * 2 ** (n - 1)
        if self.randomization:
            deviation = math.floor(r * self.randomization * ms)
            ms = ms - deviation if math.floor(r * 10) % 2 == 0 else ms + deviation
        return int(min(ms, self.delay_max * 1000.0))

    def bounds(self, n: int) -> tuple[float, float]:
        """The interval (s) any delay before attempt ``n`` falls in, whatever the random draw."""
        base = self.delay * 2 ** (n - 1)
        low = base * (1 - self.randomization)
        high = base * (1 + self.randomization)
        return (min(low, self.delay_max), min(high, self.delay_max))


@dataclass
class ReconnectAttempt:
    """One reconnect attempt; times in seconds since the disconnect was noticed."""

    n: int
    started_at: float
    delay_s: float
    ok: bool
    error_code: str | None = None
    ended_at: float | None = None
    waited_s: float | None = None  # measured: previous failure (or the disconnect) to this start
    episode: int = 1  # which disconnect this attempt answers; n restarts at 1 for each
    recovered: bool | None = None  # an accepted attempt: did the gateway resume the session?


@dataclass
class QueryEntry:
    """A React Query cache entry."""

    data: Any
    fetched_at: float
    stale: bool = False
    status: int = 0


class PortalConnectError(ConnectionError):
    """A connect that did not go live; ``code`` is the refusal's data.code, or why it failed."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


class _Signal:
    """Wakes every waiter on each change; waits are always bounded."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def next(self, timeout: float) -> bool:
        """Wait for the next change; False after ``timeout`` s without one."""
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            event = self._event
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                return predicate()
        return True


def _refusal_code(payload: Any) -> str:
    """data.code of a connect_error payload ({message, data: {code}} on the wire), else 'refused'."""
    if isinstance(payload, Mapping):
        inner = payload.get("data")
        if isinstance(inner, Mapping) and inner.get("code"):
            return str(inner["code"])
        if payload.get("code"):
            return str(payload["code"])
    return "refused"


class PortalTab:
    """One portal tab: a socket with the portal's reconnection, and a React Query cache fed over REST."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        token_provider: Callable[[], str],
        policy: ReconnectPolicy | None = None,
        transports: Iterable[str] = ("websocket",),
        socketio_path: str = "/socket.io/",
        rest_paths: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        active_queries: Iterable[QueryKey] | None = None,
        request_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.token_provider = token_provider
        self.policy = policy or ReconnectPolicy()
        self.transports = list(transports)
        self.socketio_path = socketio_path
        self.rest_paths = dict(rest_paths if rest_paths is not None else contract.rest_paths())
        self._rng = rng or random.Random()
        self._clock = clock
        self.active_queries: set[QueryKey] = set(DEFAULT_QUERIES if active_queries is None else active_queries)
        self._request_timeout = request_timeout

        self.state = "closed"
        self.state_history: list[tuple[float, str]] = []
        self.events: list[tuple[float, str, Any]] = []
        self.event_counts: Counter[str] = Counter()
        self.http_requests: list[tuple[float, str, str, int]] = []
        self.cache: dict[QueryKey, QueryEntry] = {}
        self.attempts: list[ReconnectAttempt] = []
        self.disconnects: list[tuple[float, str]] = []  # (t, socket.io-client reason)
        self.refusals: list[tuple[float, str]] = []  # (t, code) of every refused connect
        self.reconnect_failed = 0
        self.token_requests = 0
        self.recovery = RecoverySession()  # socket.io-client's pid and last offset, kept across reconnects
        self.recovered: bool | None = None  # the last accepted connect resumed the session
        self.withheld: list[Withheld] = []  # events that arrived before a refusal (shown at the next accepted connect)

        self._sio: RecoveringClient | None = None
        self._http: aiohttp.ClientSession | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._fetches: dict[QueryKey, asyncio.Task[None]] = {}
        self._refetch_again: set[QueryKey] = set()
        self._closing = False
        self._signal = _Signal()
        self._last_activity = clock()

    # lifecycle -----------------------------------------------------------

    async def connect(self, timeout: float = 5.0, *, load_queries: bool = False) -> None:
        """Open the socket once (no retry); raise PortalConnectError with the refusal code if refused.

        ``load_queries`` also fetches every mounted query, as a page load does.
        """
        if self._sio is not None and self._sio.connected:
            return
        self._closing = False
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._request_timeout))
        self._set_state("connecting")
        ok, code = await self._attempt(timeout)
        if not ok:
            self._set_state("failed")
            raise PortalConnectError(code or "refused", f"tab {self.name} could not connect to {self.base_url}")
        self._set_state("live")
        if load_queries:
            await self.refresh_all()

    async def close(self) -> None:
        """Stop reconnecting, cancel fetches, disconnect, close the HTTP session."""
        self._closing = True
        tasks = [t for t in (self._reconnect_task, *self._fetches.values()) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        self._reconnect_task = None
        await self._dispose(self._sio)
        self._sio = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self.state != "closed":
            self._set_state("closed")

    async def __aenter__(self) -> "PortalTab":
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def open_conversation(self, conversation_id: str) -> None:
        """Mount the messages query of one conversation (the agent opened it)."""
        self.active_queries.add(("conversation-messages", conversation_id))

    # socket --------------------------------------------------------------

    async def _attempt(self, timeout: float) -> tuple[bool, str | None]:
        """One connection attempt with a fresh token and a fresh client; (ok, failure code)."""
        assert self._http is not None
        self.token_requests += 1
        token = self.token_provider()
        client = RecoveringClient(
            reconnection=False, handle_sigint=False, http_session=self._http, request_timeout=timeout,
            session=self.recovery,
        )
        refusal: list[Any] = []

        async def on_connect_error(data: Any = None) -> None:
            refusal.append(data)

        async def on_disconnect(reason: str | None = None) -> None:
            self._on_disconnect(client, reason)

        async def on_any(event: str, *args: Any) -> None:
            self._on_event(event, args[0] if len(args) == 1 else (list(args) or None))

        client.on("connect_error", on_connect_error)
        client.on("disconnect", on_disconnect)
        client.on("*", on_any)
        self._sio = client
        try:
            await asyncio.wait_for(
                client.connect(
                    self.base_url,
                    auth={"token": token},
                    transports=self.transports,
                    socketio_path=self.socketio_path,
                    wait_timeout=timeout,
                ),
                timeout + 1.0,
            )
            self.recovered = client.recovered
            return True, None
        except (socketio.exceptions.ConnectionError, asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            if client.failed_namespaces:
                code = _refusal_code(refusal[-1] if refusal else None)
            elif isinstance(exc, asyncio.TimeoutError):
                code = "timeout"
            else:
                code = TRANSPORT_ERROR
            if client.failed_namespaces:
                self.refusals.append((self._clock(), code))
            self.withheld.extend(client.withheld)
            self._sio = None
            await self._dispose(client)
            return False, code

    async def _dispose(self, client: socketio.AsyncClient | None) -> None:
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), 5.0)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - teardown must not raise
            try:
                await client.eio.disconnect(abort=True)
            except Exception:  # noqa: BLE001
                pass

    def _on_disconnect(self, client: socketio.AsyncClient, reason: str | None) -> None:
        if client is not self._sio or self._closing:
            return
        # python-socketio reports a Socket.IO DISCONNECT packet and an Engine.IO
        # close packet both as "server disconnect"; only the former leaves the
        # Engine.IO transport still connected while the handler runs.
        if reason == client.reason.SERVER_DISCONNECT:
            name = IO_SERVER_DISCONNECT if client.eio.state == "connected" else TRANSPORT_CLOSE
        else:
            name = TRANSPORT_ERROR
        now = self._clock()
        self.disconnects.append((now, name))
        self._set_state("warning")
        if name == IO_SERVER_DISCONNECT:
            return  # socket.io-client v4 does not reconnect after the server said goodbye
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.create_task(self._reconnect(client, now))

    async def _reconnect(self, old: socketio.AsyncClient, noticed: float) -> None:
        """socket.io-client v4 Manager.reconnect(): backoff, ``attempts`` tries, then reconnect_failed."""
        await self._dispose(old)
        if self._sio is old:
            self._sio = None
        waiting_since = noticed
        episode = len(self.disconnects)
        for n in range(1, self.policy.attempts + 1):
            delay_ms = self.policy.delay_ms(n, self._rng.random())
            await asyncio.sleep(delay_ms / 1000.0)  # the backoff delay is the behaviour itself
            if self._closing:
                return
            started = self._clock()
            ok, code = await self._attempt(self.policy.attempt_timeout)
            ended = self._clock()
            self.attempts.append(
                ReconnectAttempt(
                    n=n,
                    started_at=started - noticed,
                    delay_s=delay_ms / 1000.0,
                    ok=ok,
                    error_code=code,
                    ended_at=ended - noticed,
                    waited_s=started - waiting_since,
                    episode=episode,
                    recovered=self.recovered if ok else None,
                )
            )
            self._touch()
            if ok:
                self._set_state("live")  # the backoff starts from attempt 1 next time
                return
            waiting_since = ended
        self.reconnect_failed += 1
        self._set_state("failed")

    def reconnect_schedule(self) -> list[dict[str, Any]]:
        """Every attempt with socket.io-client's allowed delay interval, for the report."""
        rows = []
        for a in self.attempts:
            low, high = self.policy.bounds(a.n)
            rows.append(
                {
                    "n": a.n,
                    "episode": a.episode,
                    "at_ms": round(a.started_at * 1000.0),
                    "delay_ms": round(a.delay_s * 1000.0),
                    "waited_ms": None if a.waited_s is None else round(a.waited_s * 1000.0),
                    "min_ms": round(low * 1000.0),
                    "max_ms": round(high * 1000.0),
                    "ok": a.ok,
                    "error_code": a.error_code,
                    "recovered": a.recovered,
                }
            )
        return rows

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        self.state_history.append((self._clock(), state))
        self._signal.fire()

    # events and the query cache -----------------------------------------

    def _on_event(self, name: str, data: Any) -> None:
        self.events.append((self._clock(), name, data))
        self.event_counts[name] += 1
        self._touch()
        body = data if isinstance(data, Mapping) else {}
        if name == "new_message":
            self.invalidate(("conversations",))
            self.invalidate(("conversation-messages", body.get("conversationId")))
            self.invalidate(("dashboard-metrics",))
        elif name == "conversation_update":
            self.invalidate(("conversations",))
            self.invalidate(("conversation-messages", body.get("id") or body.get("conversationId")))
        elif name == "status_update":
            self.invalidate(("conversation-messages", body.get("conversationId")))
            self.invalidate(("conversations",))
        elif name == "metrics_update":
            self.invalidate(("dashboard-metrics",))

    def invalidate(self, key: QueryKey) -> None:
        """queryClient.invalidateQueries(key): prefix match, mark stale, refetch the mounted ones now."""
        for cached, entry in self.cache.items():
            if cached[: len(key)] == key:
                entry.stale = True
        for query in self.active_queries:
            if query[: len(key)] != key or self._closing:
                continue
            running = self._fetches.get(query)
            if running is not None and not running.done():
                self._refetch_again.add(query)
            else:
                self._fetches[query] = asyncio.create_task(self._fetch_loop(query))

    async def _fetch_loop(self, key: QueryKey) -> None:
        try:
            while True:
                self._refetch_again.discard(key)
                await self.fetch(key)
                if key not in self._refetch_again or self._closing:
                    return
        finally:
            if self._fetches.get(key) is asyncio.current_task():
                del self._fetches[key]
            self._touch()

    def _path_for(self, key: QueryKey) -> str:
        if key == ("conversations",):
            return self.rest_paths["conversations"]
        if key == ("dashboard-metrics",):
            return self.rest_paths["stats"]
        if len(key) == 2 and key[0] == "conversation-messages":
            return self.rest_paths["messages"].replace("{conversationId}", quote(str(key[1]), safe=""))
        raise KeyError(f"no REST path for query {key!r}")

    async def fetch(self, key: QueryKey) -> int:
        """GET one query with a fresh bearer token; store it on 200. Returns the status (0: no response)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._request_timeout))
        path = self._path_for(key)
        self._touch()
        self.token_requests += 1
        headers = {"Authorization": f"Bearer {self.token_provider()}"}
        status, data = 0, None
        try:
            async with self._http.get(self.base_url + path, headers=headers) as resp:
                status = resp.status
                if status == 200:
                    data = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            pass
        now = self._clock()
        self.http_requests.append((now, "GET", path, status))
        if status == 200:
            self.cache[key] = QueryEntry(data=data, fetched_at=now, stale=False, status=status)
        self._touch()
        return status

    async def refresh_all(self) -> dict[QueryKey, int]:
        """The manual refresh button: refetch every mounted query; the HTTP status of each."""
        keys = sorted(self.active_queries, key=repr)
        statuses = await asyncio.gather(*(self.fetch(k) for k in keys))
        return dict(zip(keys, statuses))

    # observations --------------------------------------------------------

    @property
    def metrics_updates_received(self) -> int:
        return self.event_counts["metrics_update"]

    @property
    def stats_requests(self) -> int:
        stats = self.rest_paths["stats"]
        return sum(1 for _, method, path, _ in self.http_requests if method == "GET" and path == stats)

    def mark(self) -> int:
        """An index into ``events``: pass it as ``since`` to wait only for what comes after."""
        return len(self.events)

    def _touch(self) -> None:
        self._last_activity = self._clock()
        self._signal.fire()

    async def wait_for_event(
        self,
        name: str,
        predicate: Callable[[Any], bool] | None = None,
        timeout: float = 5.0,
        *,
        since: int | None = None,
    ) -> tuple[float, str, Any]:
        """The first ``name`` event at index >= ``since`` (default: arriving from now) matching ``predicate``."""
        start = self.mark() if since is None else since
        found: list[tuple[float, str, Any]] = []

        def match() -> bool:
            for item in self.events[start:]:
                if item[1] == name and (predicate is None or predicate(item[2])):
                    found.append(item)
                    return True
            return False

        if not await self._signal.until(match, timeout):
            raise TimeoutError(f"tab {self.name}: no {name} within {timeout:g} s")
        return found[0]

    async def wait_for_state(self, state: str, timeout: float) -> None:
        """Wait until the connection state is ``state``; TimeoutError otherwise."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; one of {STATES}")
        if not await self._signal.until(lambda: self.state == state, timeout):
            raise TimeoutError(f"tab {self.name}: state {self.state!r}, not {state!r}, after {timeout:g} s")

    async def wait_for_any_state(self, states: Iterable[str], timeout: float) -> str | None:
        """The first of ``states`` the tab is in within ``timeout``, or None (e.g. live or failed)."""
        wanted = set(states)
        unknown = wanted - set(STATES)
        if unknown:
            raise ValueError(f"unknown state(s) {sorted(unknown)}; one of {STATES}")
        if await self._signal.until(lambda: self.state in wanted, timeout):
            return self.state
        return None

    async def wait_quiescent(self, quiet_for: float, timeout: float) -> bool:
        """True once no socket event and no HTTP request happened for ``quiet_for`` s; False if never within ``timeout``.

        A refetch loop (MET-3) shows as False.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            busy = any(not t.done() for t in self._fetches.values())
            quiet = self._clock() - self._last_activity
            if not busy and quiet >= quiet_for:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            # wake on the next activity, or when the quiet period would be complete
            await self._signal.next(min(remaining, max(quiet_for - quiet, 0.01)))
