"""A scenario: tenants, their tabs, events published to them, then the checks.

The scenario owns its clients and its publisher and closes them whatever
happens. ``settle`` synchronises on events only: it waits (bounded by the
latency budget plus a grace period) until every expected delivery has arrived,
then publishes one barrier event per tenant and waits for each client to see
its own, so a late leak or duplicate has had its chance to show.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Sequence

from realtime_conformance.harness.judging.checks import CheckResult, ClientView, Publish, canonical, check
from realtime_conformance.harness.wire.clients import TenantClient
from realtime_conformance.harness.wire import waits as _waits
from realtime_conformance.harness.judging.failures import UnknownEvidence
from realtime_conformance.harness.wire.portal import PortalTab
from realtime_conformance.harness.wire.publisher import Publisher
from realtime_conformance.harness.settings import Settings
from realtime_conformance.harness.wire.tokens import TokenFactory

# The field each event type's data uses for its time; the harness makes it unique
# per publish, so every published payload is distinguishable on arrival.
STAMP_FIELD = {
    "new_message": "timestamp",
    "conversation_update": "lastMessageAt",
    "status_update": "timestamp",
    "metrics_update": "timestamp",
}
_RUN = uuid.uuid4().hex[:6]
_TENANTS = itertools.count(1)


def unique_tenant(label: str = "t") -> str:
    """A tenant id no other scenario of any run uses."""
    return f"{label}-{_RUN}-{next(_TENANTS)}"


class Scenario:
    """Clients and publishes of one check; use as ``async with target.scenario() as sc``."""

    def __init__(self, *, settings: Settings, url: str, amqp_url: str, queue: str, tokens: TokenFactory) -> None:
        self.settings = settings
        self.url = url
        self.tokens = tokens
        self.publisher = Publisher(amqp_url, queue)
        self.clients: list[TenantClient] = []
        self.tabs: list[PortalTab] = []
        self.publishes: list[Publish] = []
        self._seq = itertools.count(1)
        self._changed = asyncio.Event()
        self._base_time = datetime.now(timezone.utc)

    async def __aenter__(self) -> "Scenario":
        await self.publisher.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(c.close() for c in self.clients), *(t.close() for t in self.tabs),
                             return_exceptions=True)
        await self.publisher.close()

    # -- clients --------------------------------------------------------
    @property
    def grace_s(self) -> float:
        return 1.5 * self.settings.latency_budget_ms / 1000 + 1.0

    def tenant(self, label: str = "t") -> str:
        return unique_tenant(label)

    def client(self, tenant: str, *, name: str | None = None, token: str | Callable[[], str] | None = "valid",
               transports: Sequence[str] = ("websocket",), headers: Mapping[str, str] | None = None,
               auth: Mapping[str, Any] | None = None, query: str = "", expects_events: bool = True,
               url: str | None = None) -> TenantClient:
        """A recording client, not yet connected. ``token='valid'`` signs a fresh valid token;
        ``url`` reaches the gateway another way (through a fault proxy, say)."""
        if token == "valid":
            token = self.tokens.valid(tenant)
        c = TenantClient(
            name=name or f"{tenant}/tab{sum(1 for x in self.clients if x.tenant == tenant) + 1}",
            tenant=tenant, url=url or self.url, token=token, transports=tuple(transports),
            socketio_path=self.settings.socketio_path, headers=dict(headers or {}), auth=auth, query=query,
        )
        c.expects_events = expects_events  # type: ignore[attr-defined]
        c.on_event = lambda _c, _r: self._changed.set()
        self.clients.append(c)
        return c

    async def connect(self, tenant: str, *, tabs: int = 1, token: str | None = "valid",
                      transports: Sequence[str] = ("websocket",), timeout: float = 5.0) -> list[TenantClient]:
        """Connect ``tabs`` clients of a tenant (same token, as tabs of one user share it)."""
        token = self.tokens.valid(tenant) if token == "valid" else token
        new = [self.client(tenant, token=token, transports=transports) for _ in range(tabs)]
        ok = await asyncio.gather(*(c.connect(timeout) for c in new))
        if not all(ok):
            bad = [c for c, good in zip(new, ok) if not good]
            raise UnknownEvidence(
                f"{len(bad)} of {len(new)} clients with a valid token could not connect, so delivery "
                f"cannot be observed; first refusal: {bad[0].connect_errors[-1].data if bad[0].connect_errors else 'timeout'}"
            )
        return new

    def tab(self, tenant: str, *, name: str | None = None, url: str | None = None,
            token_provider: Callable[[], str] | None = None, active_queries: Any = (),
            seed: int | None = None) -> PortalTab:
        """A portal tab (the seed's frontend behaviour) following the settings' reconnect policy."""
        import random

        tab = PortalTab(
            name=name or f"{tenant}/portal{len(self.tabs) + 1}",
            base_url=url or self.url,
            token_provider=token_provider or (lambda: self.tokens.valid(tenant)),
            policy=self.settings.reconnect_policy,
            socketio_path=self.settings.socketio_path,
            rest_paths=self.settings.rest_paths,
            rng=random.Random(seed if seed is not None else len(self.tabs)),
            clock=time.perf_counter,
            active_queries=active_queries,
        )
        tab.tenant = tenant  # type: ignore[attr-defined]
        self.tabs.append(tab)
        return tab

    # -- publishing -----------------------------------------------------
    def _stamp(self, event_type: str, data: Any, seq: int) -> Any:
        if not isinstance(data, dict) or event_type not in STAMP_FIELD:
            return data
        when = self._base_time + timedelta(microseconds=seq)
        return {**data, STAMP_FIELD[event_type]: when.isoformat(timespec="microseconds").replace("+00:00", "Z")}

    async def publish(self, tenant: str, event_type: str, data: Any, *, stamp: bool = True,
                      barrier: bool = False) -> Publish:
        """Publish one event as the State Manager would, made unique by its time field."""
        seq = next(self._seq)
        if stamp:
            data = self._stamp(event_type, data, seq)
        envelope, sent_at = await self.publisher.publish_event(event_type, tenant, data)
        p = Publish(seq, tenant, event_type, data, envelope, sent_at, barrier)
        self.publishes.append(p)
        return p

    # -- synchronisation ------------------------------------------------
    def _live_clients(self) -> list[TenantClient]:
        return [c for c in self.clients if c.connected_at and c.closed_at is None
                and getattr(c, "expects_events", True)]

    def _outstanding(self) -> int:
        remaining = 0
        for c in self._live_clients():
            got = {canonical(r.data) for r in c.received}
            first = c.connected_at[0]
            remaining += sum(1 for p in self.publishes if p.tenant == c.tenant and p.sent_at >= first and p.key not in got)
        return remaining

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Re-check ``predicate`` on every received event until it holds; bounded by ``timeout``."""
        return await _waits.wait_until(self._changed, predicate, timeout)

    async def settle(self, *, barrier: bool = True) -> bool:
        """Wait for every expected delivery, then for a per-tenant barrier. True if all arrived."""
        complete = await self.wait_until(lambda: self._outstanding() == 0, self.grace_s)
        if not barrier:
            return complete
        tenants = sorted({c.tenant for c in self._live_clients()})
        barriers = {t: await self.publish(t, "metrics_update", {
            "activeConversations": 0, "waitingConversations": 0, "totalMessagesToday": 0,
            "avgResponseTime": 0, "timestamp": ""}, barrier=True) for t in tenants}

        def barriers_seen() -> bool:
            for c in self._live_clients():
                b = barriers[c.tenant]
                if not any(canonical(r.data) == b.key for r in c.received):
                    return False
            return True

        seen = await self.wait_until(barriers_seen, self.grace_s)
        return complete and seen

    # -- checks ---------------------------------------------------------
    def views(self, clients: Sequence[TenantClient] | None = None) -> list[ClientView]:
        views = [
            ClientView(c.name, c.tenant, c.connected_at[0] if c.connected_at else None, c.closed_at,
                       [(r.event, r.data, r.at) for r in c.received], getattr(c, "expects_events", True))
            for c in (self.clients if clients is None else clients)
        ]
        if clients is None:
            for t in self.tabs:
                live = [at for at, state in t.state_history if state == "live"]
                views.append(ClientView(t.name, t.tenant, live[0] if live else None, None,  # type: ignore[attr-defined]
                                        [(name, data, at) for at, name, data in t.events], expects_events=False))
        return views

    def check(self) -> CheckResult:
        return check(self.publishes, self.views(), budget_ms=self.settings.latency_budget_ms)

    def summary(self) -> dict[str, Any]:
        """Counts for the report's evidence."""
        return {
            "tenants": len({c.tenant for c in self.clients}),
            "clients": len(self.clients),
            "published": len(self.publishes),
            "received": sum(len(c.received) for c in self.clients),
        }
