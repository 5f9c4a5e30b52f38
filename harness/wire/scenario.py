"""A scenario: tenants, their tabs, events published to them, then the checks.

The scenario owns its clients and its publisher and closes them whatever
happens. Every published payload carries a marker (a unique value in its time
field), so what arrives is recognised by identity even when a gateway reshapes
it. ``settle`` and ``delivery`` synchronise on events only, by one rule: late is
not lost. An expected delivery counts as lost only once something published
later to the same tenant has reached that client (a per-tenant barrier event,
or the check's own later publishes). Until then it is late, and the wait goes
on as long as deliveries keep arriving (up to ``waits.LATE_CAP_S``); what is
still outstanding when they stop arriving is "still arriving" (UNKNOWN, see
DLV-2), never lost.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

from realtime_conformance.harness import samples
from realtime_conformance.harness.judging.checks import CheckResult, ClientView, Publish, Recogniser, check
from realtime_conformance.harness.judging.failures import UnknownEvidence
from realtime_conformance.harness.settings import Settings
from realtime_conformance.harness.wire import waits as _waits
from realtime_conformance.harness.wire.clients import TenantClient
from realtime_conformance.harness.wire.portal import PortalTab
from realtime_conformance.harness.wire.publisher import Publisher, envelope_for
from realtime_conformance.harness.wire.tokens import TokenFactory

# The field each event type's data uses for its time; the harness puts its marker there,
# unique per publish across the whole run, so every published payload is recognisable.
STAMP_FIELD = {
    "new_message": "timestamp",
    "conversation_update": "lastMessageAt",
    "status_update": "timestamp",
    "metrics_update": "timestamp",
}
# Which type a check uses when it needs some event and the payload is not what it judges:
# the first the target delivers in a recognisable form (see Target's preflight).
CONTROL_PREFERENCE = ("metrics_update", "conversation_update", "new_message", "status_update")
_RUN = uuid.uuid4().hex[:6]
_TENANTS = itertools.count(1)
_MARKERS = itertools.count(1)
_BASE_TIME = datetime.now(timezone.utc).replace(microsecond=0)
_KNOWN = Recogniser()  # every publish of this run, by marker: strays from earlier scenarios stay recognisable


def unique_tenant(label: str = "t") -> str:
    """A tenant id no other scenario of any run uses."""
    return f"{label}-{_RUN}-{next(_TENANTS)}"


def stamp(event_type: str, data: Any, field: str | None = None) -> tuple[Any, str | None]:
    """``data`` with a marker unique in this run in its time field (``field``, else the type's), and
    the marker; data that is not an object, or a type without a known field, is left as is."""
    field = field or STAMP_FIELD.get(event_type)
    if not isinstance(data, dict) or field is None:
        return data, None
    when = _BASE_TIME + timedelta(microseconds=next(_MARKERS))
    marker = when.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return {**data, field: marker}, marker


def recognise(data: Any) -> Publish | None:
    """The publish of this run that ``data`` came from, if any."""
    return _KNOWN(data)


class Scenario:
    """Clients and publishes of one check; use as ``async with target.scenario() as sc``."""

    def __init__(self, *, settings: Settings, url: str, amqp_url: str, queue: str, tokens: TokenFactory,
                 control_types: Sequence[str] = CONTROL_PREFERENCE, control_note: str = "",
                 urls: Sequence[str] = (), spread: bool = False) -> None:
        self.settings = settings
        self.url = url
        # Every instance of the target, each reached directly; with ``spread`` each new client or
        # tab goes to the next one in turn, so a scenario's clients sit on every instance.
        self.urls = tuple(urls) or (url,)
        self.spread = spread
        self._turn = itertools.count()
        self.instance_of: dict[str, int] = {}  # client or tab name -> index of the instance it was sent to
        self.tokens = tokens
        self.publisher = Publisher(amqp_url, queue)
        self.clients: list[TenantClient] = []
        self.tabs: list[PortalTab] = []
        self.publishes: list[Publish] = []
        self.control_types = tuple(control_types)
        self._control_note = control_note
        self._seq = itertools.count(1)
        self._changed = asyncio.Event()
        self._seen: dict[int, int | None] = {}  # id(received item) -> seq of its publish
        self._mine: set[int] = set()  # ids of this scenario's publishes
        self._by_seq: dict[int, Publish] = {}  # this scenario's publishes by seq (the waits look them up often)

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
        """How long a wait for deliveries goes on with nothing new arriving (1.5 budgets + 1 s)."""
        return 1.5 * self.settings.latency_budget_ms / 1000 + 1.0

    def tenant(self, label: str = "t") -> str:
        return unique_tenant(label)

    def client(self, tenant: str, *, name: str | None = None, token: str | Callable[[], str] | None = "valid",
               transports: Sequence[str] = ("websocket",), headers: Mapping[str, str] | None = None,
               auth: Mapping[str, Any] | None = None, query: str = "", expects_events: bool = True,
               url: str | None = None, instance: int | None = None) -> TenantClient:
        """A recording client, not yet connected. ``token='valid'`` signs a fresh valid token;
        ``url`` reaches the gateway another way (through a fault proxy, say); ``instance`` picks
        which of the target's instances it connects to."""
        if token == "valid":
            token = self.tokens.valid(tenant)
        name = name or f"{tenant}/tab{sum(1 for x in self.clients if x.tenant == tenant) + 1}"
        url = url or self._next_url(name, instance)
        c = TenantClient(
            name=name,
            tenant=tenant, url=url, token=token, transports=tuple(transports),
            socketio_path=self.settings.socketio_path, headers=dict(headers or {}), auth=auth, query=query,
        )
        c.expects_events = expects_events  # type: ignore[attr-defined]
        c.group = token if isinstance(token, str) else None  # type: ignore[attr-defined]  # tabs share a token
        c.on_event = lambda _c, _r: self._changed.set()
        self.clients.append(c)
        return c

    def _next_url(self, name: str, instance: int | None = None) -> str:
        """The URL a new client without one of its own goes to: the next instance in turn when
        spreading (or ``instance``), else the first; remembered under ``name``."""
        if instance is None:
            instance = next(self._turn) % len(self.urls) if self.spread else 0
        self.instance_of[name] = instance % len(self.urls)
        return self.urls[instance % len(self.urls)]

    def on_instance(self, index: int) -> list[TenantClient]:
        """The clients this scenario sent to instance ``index``."""
        return [c for c in self.clients if self.instance_of.get(c.name) == index]

    async def connect(self, tenant: str, *, tabs: int = 1, token: str | None = "valid",
                      transports: Sequence[str] = ("websocket",), timeout: float = 5.0,
                      instance: int | None = None) -> list[TenantClient]:
        """Connect ``tabs`` clients of a tenant (same token, as tabs of one user share it);
        all to ``instance`` if given, else spread when the scenario spreads."""
        token = self.tokens.valid(tenant) if token == "valid" else token
        new = [self.client(tenant, token=token, transports=transports, instance=instance) for _ in range(tabs)]
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

        name = name or f"{tenant}/portal{len(self.tabs) + 1}"
        tab = PortalTab(
            name=name,
            base_url=url or self._next_url(name),
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
    @property
    def control_type(self) -> str:
        """The event type checks use when they need an event and do not judge its payload."""
        if not self.control_types:
            raise UnknownEvidence("no event type reaches a fresh client of this target in a recognisable form, "
                                  "so nothing can be observed through delivery: see DLV-6 and DLV-1"
                                  + (f" ({self._control_note})" if self._control_note else ""))
        return self.control_types[0]

    def _stamp(self, event_type: str, data: Any, field: str | None) -> tuple[Any, str | None]:
        return stamp(event_type, data, field)

    async def publish(self, tenant: str, event_type: str, data: Any, *, stamp: bool = True,
                      barrier: bool = False, marker_field: str | None = None) -> Publish:
        """Publish one event as the State Manager would, marked by a unique value in its time field.

        ``marker_field`` names the string field that carries the marker for an event type of
        your own (the four contract types have theirs); ``stamp=False`` sends ``data`` as is,
        and it is then recognised by equality only."""
        seq = next(self._seq)
        marker = None
        if stamp:
            data, marker = self._stamp(event_type, data, marker_field)
        envelope = envelope_for(event_type, tenant, data)
        p = Publish(seq, tenant, event_type, data, envelope, time.perf_counter(), barrier, marker)
        _KNOWN.add(p)  # before sending: the event may arrive before the broker's confirm does
        self._mine.add(id(p))
        self._by_seq[seq] = p
        self.publishes.append(p)
        p.sent_at = await self.publisher.publish_envelope(envelope)
        return p

    async def publish_control(self, tenant: str, n: int = 1, *, barrier: bool = False) -> Publish:
        """One event of the control type (a plain sample) to ``tenant``."""
        kind = self.control_type
        return await self.publish(tenant, kind, samples.sample(kind, n), barrier=barrier)

    # -- recognition and synchronisation ------------------------------------
    def seq_of(self, item: Any, data: Any) -> int | None:
        """The seq of this scenario's publish that a received item is, if any (cached per item)."""
        key = id(item)
        if key not in self._seen:
            p = recognise(data)
            self._seen[key] = p.seq if p is not None and id(p) in self._mine else None
        return self._seen[key]

    def published_as(self, data: Any) -> Publish | None:
        """The publish of this run that ``data`` came from; None for what the gateway made itself."""
        return recognise(data)

    def delivered(self, receiver: TenantClient | PortalTab, publish: Publish) -> bool:
        """Whether ``receiver`` has received ``publish`` (recognised by marker, whatever its shape)."""
        return publish.seq in self._seqs(receiver)

    def _seqs(self, receiver: TenantClient | PortalTab) -> set[int]:
        if isinstance(receiver, PortalTab):
            items: Iterable[tuple[Any, Any]] = ((e, e[2]) for e in receiver.events)
        else:
            items = ((r, r.data) for r in receiver.received)
        return {s for item, data in items if (s := self.seq_of(item, data)) is not None}

    async def wait_delivered(self, receivers: Sequence[TenantClient | PortalTab], publishes: Sequence[Publish],
                             timeout: float) -> dict[str, list[int]]:
        """Wait until every receiver has every publish; returns what is still missing (name -> seqs).

        A plain bounded wait, for preconditions. To judge whether something was lost, use
        ``delivery``: it applies the late-is-not-lost rule."""
        def missing() -> dict[str, list[int]]:
            out = {}
            for r in receivers:
                have = self._seqs(r)
                lost = [p.seq for p in publishes if p.seq not in have]
                if lost:
                    out[r.name] = lost
            return out
        await self.wait_until(lambda: not missing(), timeout)
        return missing()

    def _received_count(self) -> int:
        """Everything this scenario's clients and tabs have received: the progress of a wait."""
        return sum(len(c.received) for c in self.clients) + sum(len(t.events) for t in self.tabs)

    def _unresolved(self, receiver: TenantClient | PortalTab, publishes: Iterable[Publish]) -> list[Publish]:
        """The publishes ``receiver`` has neither received nor seen overtaken by a later one of their tenant."""
        have = self._seqs(receiver)
        if not have:
            return [p for p in publishes if p.seq not in have]
        latest: dict[str, int] = {}
        for seq in have:
            q = self._by_seq.get(seq)
            if q is not None and seq > latest.get(q.tenant, 0):
                latest[q.tenant] = seq
        return [p for p in publishes if p.seq not in have and p.seq > latest.get(p.tenant, 0)]

    async def wait_while_arriving(self, predicate: Callable[[], bool], *, first_s: float | None = None,
                                  cap_s: float = _waits.LATE_CAP_S) -> bool:
        """Re-check ``predicate`` on every received event while deliveries keep arriving: False once
        nothing new arrived for ``grace_s`` (``first_s`` before the first one), or at ``cap_s``."""
        return await _waits.wait_while_arriving(self._changed, predicate, self._received_count,
                                                idle_s=self.grace_s, first_s=first_s, cap_s=cap_s)

    async def delivery(self, receivers: Sequence[TenantClient | PortalTab], publishes: Sequence[Publish], *,
                       first_s: float | None = None, cap_s: float = _waits.LATE_CAP_S) -> "Delivery":
        """Wait until each receiver has each publish, by the late-is-not-lost rule.

        Ends early once every publish a receiver lacks has been overtaken (something published
        later to its tenant reached it). Otherwise, after deliveries stop arriving, one barrier
        event per tenant is published and waited for the same way. ``first_s`` allows a gateway
        that is still coming back that long before its first delivery."""
        started = time.perf_counter()
        wanted = list(publishes)

        def settled() -> bool:
            return all(not self._unresolved(r, wanted) for r in receivers)

        done = await self.wait_while_arriving(settled, first_s=first_s, cap_s=cap_s)
        if not done and self.control_types:
            tenants = sorted({getattr(r, "tenant") for r in receivers})
            for tenant in tenants:
                await self.publish_control(tenant, 0, barrier=True)
            await self.wait_while_arriving(settled, cap_s=max(cap_s - (time.perf_counter() - started), self.grace_s))
        outcome = Delivery(waited_s=round(time.perf_counter() - started, 2))
        for r in receivers:
            have = self._seqs(r)
            unresolved = {p.seq for p in self._unresolved(r, wanted)}
            lost = [p.seq for p in wanted if p.seq not in have and p.seq not in unresolved]
            if lost:
                outcome.lost[r.name] = lost
            if unresolved:
                outcome.pending[r.name] = sorted(unresolved)
        return outcome

    def _live_clients(self) -> list[TenantClient]:
        return [c for c in self.clients if c.connected_at and c.closed_at is None
                and getattr(c, "expects_events", True)]

    def _expected_of(self, c: TenantClient) -> list[Publish]:
        first = c.connected_at[0]
        return [p for p in self.publishes if p.tenant == c.tenant and p.sent_at >= first]

    def _outstanding(self) -> int:
        """Expected deliveries neither made nor overtaken (late, not yet lost)."""
        return sum(len(self._unresolved(c, self._expected_of(c))) for c in self._live_clients())

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Re-check ``predicate`` on every received event until it holds; bounded by ``timeout``."""
        return await _waits.wait_until(self._changed, predicate, timeout)

    async def settle(self, *, barrier: bool = True, first_s: float | None = None) -> bool:
        """Wait for every expected delivery, then for a per-tenant barrier. True if all arrived.

        Both waits go on while deliveries keep arriving (late is not lost); a barrier that reached
        a client settles everything published before it to that client: delivered, or lost."""
        complete = await self.wait_while_arriving(lambda: self._outstanding() == 0, first_s=first_s)
        if not barrier or not self.control_types:
            return complete
        tenants = sorted({c.tenant for c in self._live_clients()})
        barriers = {t: await self.publish_control(t, 0, barrier=True) for t in tenants}

        def barriers_seen() -> bool:
            return all(self.delivered(c, barriers[c.tenant]) for c in self._live_clients())

        seen = await self.wait_while_arriving(barriers_seen)
        return complete and seen

    # -- checks ---------------------------------------------------------
    def views(self, clients: Sequence[TenantClient] | None = None) -> list[ClientView]:
        views = [
            ClientView(c.name, c.tenant, c.connected_at[0] if c.connected_at else None, c.closed_at,
                       [(r.event, r.data, r.at) for r in c.received], getattr(c, "expects_events", True),
                       getattr(c, "group", None))
            for c in (self.clients if clients is None else clients)
        ]
        if clients is None:
            for t in self.tabs:
                live = [at for at, state in t.state_history if state == "live"]
                views.append(ClientView(t.name, t.tenant, live[0] if live else None, None,  # type: ignore[attr-defined]
                                        [(name, data, at) for at, name, data in t.events], expects_events=False))
        return views

    def check(self, clients: Sequence[TenantClient] | None = None) -> CheckResult:
        """Every finding over this scenario's history (``clients``: only these)."""
        return check(self.publishes, self.views(clients), budget_ms=self.settings.latency_budget_ms,
                     known=_KNOWN.by_marker)

    def summary(self) -> dict[str, Any]:
        """Counts for the report's evidence."""
        return {
            "tenants": len({c.tenant for c in self.clients}),
            "clients": len(self.clients),
            "published": len(self.publishes),
            "received": sum(len(c.received) for c in self.clients),
        }


@dataclass
class Delivery:
    """What ``Scenario.delivery`` found: per receiver, the seqs lost (overtaken by a later event of
    their tenant) and those still pending (late: nothing later reached that receiver either)."""

    lost: dict[str, list[int]] = field(default_factory=dict)
    pending: dict[str, list[int]] = field(default_factory=dict)
    waited_s: float = 0.0

    @property
    def still_arriving(self) -> str | None:
        """The UNKNOWN reason when something is pending, else None."""
        if not self.pending:
            return None
        n = sum(len(v) for v in self.pending.values())
        name, seqs = next(iter(self.pending.items()))
        return (f"still arriving: {n} expected deliveries (first: event #{seqs[0]} to {name}) had not arrived "
                f"when deliveries stopped arriving after {self.waited_s:.1f} s, and nothing published after them "
                "had reached those clients either, so late cannot be told from lost: see DLV-2")
