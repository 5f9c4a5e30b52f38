"""Facts over one scenario's history: what reached whom, recognised by identity, not by equality.

Pure functions: given what was published (with send times and correlation markers) and what
every client received (with receive times and its connection window), list the findings. A
finding is a fact of one kind (an event missing, altered, delivered to another tenant, twice,
late, out of order...). It is not yet a verdict: the test that asked decides which kinds its
requirement is about, so one defect is filed once, under the requirement it breaks.

Events are recognised by the marker the harness put in each published payload (a unique value
in the payload's time field), searched anywhere in what arrived. An event that arrives with a
field added, removed or changed is still recognised as delivered; only DLV-1 (and the payload
requirements STAT-1, STAT-3) judge what it looks like.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from realtime_conformance import contract
from realtime_conformance.harness.judging.failures import Violation

GATEWAY_ORIGINATED = "metrics_update"
CONTRACT_EVENTS = frozenset(contract.event_types())

# The requirement each kind of finding describes on its own.
OWNER: dict[str, str] = {
    "missing": "DLV-1",       # an expected event never arrived, though a later one of its tenant did
    "pending": "DLV-2",       # an expected event had not arrived when the wait ended, nor anything later
    "altered": "DLV-1",       # recognised, but the payload is not JSON-equal to data
    "renamed": "DLV-1",       # recognised, but emitted under another event name
    "unrecognised": "DLV-1",  # matches nothing the harness published
    "foreign": "ISO-1",       # another tenant's event
    "duplicate": "DLV-4",     # the same event more than once
    "late": "DLV-2",          # over the latency budget
    "order": "DLV-5",         # a tenant's events out of publish order
    "siblings": "TAB-1",      # tabs sharing one token did not get the same events
}
TITLES: dict[str, str] = {
    "missing": "Event not delivered",
    "pending": "Event not delivered within the wait (late or lost)",
    "altered": "Payload not JSON-equal to the published data",
    "renamed": "Wrong event name",
    "unrecognised": "Event matches nothing that was published",
    "foreign": "Event delivered to another tenant",
    "duplicate": "Event received more than once",
    "late": "Delivery over the latency budget",
    "order": "Events of one tenant out of publish order",
    "siblings": "Tabs of one token received different events",
}
# Kinds that need every received event recognised: an unrecognisable one might be the
# missing, the foreign or the duplicated event, so they cannot be judged past it.
NEEDS_RECOGNITION = frozenset({"missing", "pending", "foreign", "duplicate", "order", "siblings"})


def normalise(value: Any) -> Any:
    """JSON value with integral floats as ints, so 1 and 1.0 compare as JSON numbers do."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    return value


def canonical(value: Any) -> str:
    """A key that is equal exactly when two JSON values are equal."""
    return json.dumps(normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Publish:
    seq: int
    tenant: str
    type: str
    data: Any
    envelope: dict[str, Any]
    sent_at: float
    barrier: bool = False
    marker: str | None = None  # a value unique to this publish, placed in its payload

    @property
    def key(self) -> str:
        return canonical(self.data)


@dataclass
class ClientView:
    """What the checks need of a client: who it is, when it was connected, what it got."""

    name: str
    tenant: str
    connected_at: float | None
    closed_at: float | None
    received: Sequence[tuple[str, Any, float]]  # (event, data, at)
    expects_events: bool = True
    group: str | None = None  # clients sharing one token (tabs of one browser)


@dataclass(frozen=True)
class Finding:
    kind: str
    client: str
    message: str
    example: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return TITLES[self.kind]

    def as_violation(self, requirement: str | None = None, severity: str = "high") -> Violation:
        return Violation(requirement or OWNER[self.kind], self.title, self.message, severity, self.example)  # type: ignore[arg-type]


@dataclass
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    own_deliveries: int = 0
    deliveries: int = 0
    controls: dict[str, int] = field(default_factory=dict)  # tenant -> own events received (all clients)
    gateway_originated: int = 0
    other_events: int = 0  # events of names the contract does not define
    unrecognised: dict[str, int] = field(default_factory=dict)  # client -> events matching nothing

    def of(self, *kinds: str) -> list[Finding]:
        return [f for f in self.findings if f.kind in kinds]

    @property
    def violations(self) -> list[Violation]:
        """Every finding as a violation of the requirement it describes on its own."""
        return [f.as_violation() for f in self.findings]

    def for_requirement(self, requirement: str) -> list[Violation]:
        return [v for v in self.violations if v.requirement == requirement]

    @property
    def positive_control(self) -> bool:
        """Every tenant that had events published saw at least one of them."""
        return bool(self.controls) and all(n > 0 for n in self.controls.values())


class Recogniser:
    """Finds the publish a received payload came from: by marker anywhere in it, else by equality."""

    def __init__(self, publishes: Iterable[Publish] = (), also: Mapping[str, Publish] | None = None) -> None:
        self.by_marker: dict[str, Publish] = dict(also or {})
        self.by_key: dict[str, Publish] = {}
        for p in publishes:
            self.add(p)

    def add(self, p: Publish) -> None:
        if p.marker is not None:
            self.by_marker[p.marker] = p
        self.by_key.setdefault(p.key, p)

    def __call__(self, data: Any) -> Publish | None:
        found = self._marker_in(data, depth=0)
        if found is not None:
            return found
        return self.by_key.get(canonical(data))

    def _marker_in(self, value: Any, depth: int) -> Publish | None:
        if isinstance(value, str):
            return self.by_marker.get(value)
        if depth > 6:
            return None
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
        for item in items:
            found = self._marker_in(item, depth + 1)
            if found is not None:
                return found
        return None


def _expected(p: Publish, c: ClientView) -> bool:
    return (
        c.expects_events
        and p.tenant == c.tenant
        and c.connected_at is not None
        and c.connected_at <= p.sent_at
        and c.closed_at is None
    )


def describe_change(published: Any, received: Any) -> dict[str, Any]:
    """How a recognised payload differs from the published one (top-level keys)."""
    if not (isinstance(published, dict) and isinstance(received, dict)):
        return {"published": published, "received": received}
    pub, got = normalise(published), normalise(received)
    return {
        "added": sorted(set(got) - set(pub)),
        "removed": sorted(set(pub) - set(got)),
        "changed": sorted(k for k in set(pub) & set(got) if pub[k] != got[k]),
    }


def check(publishes: Iterable[Publish], clients: Iterable[ClientView], *, budget_ms: float,
          known: Mapping[str, Publish] | None = None) -> CheckResult:
    """Every finding over the history, with latency samples and positive-control counts.

    ``known`` adds publishes of earlier scenarios (by marker), so a stray event from one of
    them is recognised as what it is (another tenant's) instead of as unrecognisable.
    """
    publishes = list(publishes)
    clients = list(clients)
    recognise = Recogniser(publishes, known)
    result = CheckResult()
    result.controls = {p.tenant: 0 for p in publishes}
    got: dict[str, Counter[int]] = {}
    by_seq = {p.seq: p for p in publishes}

    for c in clients:
        counts: Counter[int] = Counter()
        own_order: list[Publish] = []
        for event, data, at in c.received:
            result.deliveries += 1
            p = recognise(data)
            if p is None:
                if event == GATEWAY_ORIGINATED:
                    # Gateways emit their own metrics_update (stats); the MET checks judge those.
                    result.gateway_originated += 1
                    continue
                if event not in CONTRACT_EVENTS:
                    # An event the contract does not name (a welcome, a presence ping...): not ours to judge.
                    result.other_events += 1
                    continue
                result.unrecognised[c.name] = result.unrecognised.get(c.name, 0) + 1
                near = next((q for q in publishes if q.type == event and q.tenant == c.tenant), None)
                result.findings.append(Finding(
                    "unrecognised", c.name,
                    f"client {c.name} ({c.tenant}) received {event!r} whose payload matches nothing published",
                    {"client": c.name, "tenant": c.tenant, "event": event, "received": data,
                     "nearest_published": near.envelope if near else None}))
                continue
            if p.tenant != c.tenant:
                result.findings.append(Finding(
                    "foreign", c.name,
                    f"client {c.name} of tenant {c.tenant!r} received event #{p.seq} of tenant {p.tenant!r}",
                    {"client": c.name, "client_tenant": c.tenant, "seq": p.seq, "barrier": p.barrier,
                     "published": p.envelope}))
                continue
            counts[p.seq] += 1
            if counts[p.seq] > 1:
                continue
            if canonical(data) != p.key:
                result.findings.append(Finding(
                    "altered", c.name,
                    f"client {c.name} received event #{p.seq} ({p.type}) with a payload not equal to the published data",
                    {"client": c.name, "published": p.envelope, "received": data,
                     "difference": describe_change(p.data, data)}))
            if event != p.type:
                result.findings.append(Finding(
                    "renamed", c.name,
                    f"client {c.name} received event #{p.seq} as {event!r}; it was published as {p.type!r}",
                    {"client": c.name, "published": p.envelope, "received_as": event}))
            own_order.append(p)
            result.own_deliveries += 1
            result.controls[p.tenant] = result.controls.get(p.tenant, 0) + 1
            latency_ms = (at - p.sent_at) * 1000
            result.latencies_ms[p.type].append(latency_ms)
            if latency_ms > budget_ms:
                result.findings.append(Finding(
                    "late", c.name,
                    f"event #{p.seq} ({p.type}) reached {c.name} after {latency_ms:.0f} ms > {budget_ms:g} ms",
                    {"client": c.name, "latency_ms": round(latency_ms, 1), "published": p.envelope}))
        for seq, n in counts.items():
            if n > 1:
                p = by_seq[seq]
                result.findings.append(Finding(
                    "duplicate", c.name, f"client {c.name} received event #{p.seq} ({p.type}) {n} times",
                    {"client": c.name, "times": n, "published": p.envelope}))
        for first, second in zip(own_order, own_order[1:]):
            if second.seq < first.seq:
                result.findings.append(Finding(
                    "order", c.name,
                    f"client {c.name} received event #{first.seq} before #{second.seq}, but #{second.seq} was published first",
                    {"client": c.name, "received_order": [p.seq for p in own_order][:50],
                     "first": second.envelope, "second": first.envelope, "inversions": _inversions(own_order)}))
                break
        got[c.name] = counts
    result.findings += _missing_findings(publishes, clients, got)
    return result


def _inversions(order: Sequence[Publish]) -> int:
    """Deliveries that came after one published later than them (the bench counts these)."""
    count, highest = 0, 0
    for p in order:
        if p.seq < highest:
            count += 1
        else:
            highest = p.seq
    return count


def _missing_findings(publishes: list[Publish], clients: list[ClientView],
                      got: Mapping[str, Counter[int]]) -> list[Finding]:
    """Events a client expected and did not get, by the rule that late is not lost.

    One is ``missing`` only once something published later to its tenant reached that client;
    until then it is ``pending`` (late, maybe lost: DLV-2's business, and no other requirement
    may call it lost). When a tab sharing its token got the event, the fault is in how tabs are
    served (TAB-1: ``siblings``), not in delivery itself; a tab that got an event more often
    than a sibling is a ``siblings`` finding too."""
    groups: dict[str, list[ClientView]] = defaultdict(list)
    for c in clients:
        if c.group is not None:
            groups[c.group].append(c)
    by_tenant: dict[str, list[Publish]] = defaultdict(list)  # only a client's own tenant's events are expected
    for p in publishes:
        by_tenant[p.tenant].append(p)
    findings = []
    for c in clients:
        siblings = [s for s in groups.get(c.group, []) if s is not c] if c.group is not None else []
        latest = max(got[c.name], default=0)  # the last-published event of its own tenant it received
        missing, pending, short = [], [], []
        for p in by_tenant.get(c.tenant, ()):
            if not _expected(p, c):
                continue
            mine = got[c.name].get(p.seq, 0)
            theirs = max((got[s.name].get(p.seq, 0) for s in siblings if _expected(p, s)), default=0)
            if mine == 0 and theirs == 0:
                (missing if p.seq < latest else pending).append(p)
            elif mine < theirs:
                short.append((p, mine, theirs))
        if missing:
            findings.append(Finding(
                "missing", c.name,
                f"client {c.name} ({c.tenant}) missed {len(missing)} of its tenant's events, "
                f"first #{missing[0].seq} ({missing[0].type}), though events published after them reached it",
                {"client": c.name, "missing_count": len(missing), "first_missing": missing[0].envelope,
                 "missing_types": sorted({p.type for p in missing})}))
        if pending:
            findings.append(Finding(
                "pending", c.name,
                f"client {c.name} ({c.tenant}) had not received {len(pending)} of its tenant's events when the wait "
                f"ended, first #{pending[0].seq} ({pending[0].type}), nor anything published after them",
                {"client": c.name, "pending_count": len(pending), "first_pending": pending[0].envelope,
                 "own_received": sum(got[c.name].values())}))
        if short:
            p, mine, theirs = short[0]
            findings.append(Finding(
                "siblings", c.name,
                f"{c.name} received event #{p.seq} ({p.type}) {mine} time(s) where a tab with the same token "
                f"received it {theirs} time(s); {len(short)} such event(s)",
                {"client": c.name, "short_count": len(short), "published": p.envelope}))
    return findings
