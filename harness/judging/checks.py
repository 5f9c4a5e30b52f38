"""Invariants over one scenario's history, each reported under its requirement ID.

Pure functions: given what was published (with send times) and what every
client received (with receive times and its connection window), list the
violations with a minimal example each. No I/O, so they are unit-testable.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from realtime_conformance.harness.judging.failures import Violation


GATEWAY_ORIGINATED = "metrics_update"


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


@dataclass
class CheckResult:
    violations: list[Violation] = field(default_factory=list)
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    own_deliveries: int = 0
    deliveries: int = 0
    controls: dict[str, int] = field(default_factory=dict)  # tenant -> own events received (all clients)
    gateway_originated: int = 0

    def for_requirement(self, requirement: str) -> list[Violation]:
        return [v for v in self.violations if v.requirement == requirement]

    @property
    def positive_control(self) -> bool:
        """Every tenant that had events published saw at least one of them."""
        return bool(self.controls) and all(n > 0 for n in self.controls.values())


def _expected(p: Publish, c: ClientView) -> bool:
    return (
        c.expects_events
        and p.tenant == c.tenant
        and c.connected_at is not None
        and c.connected_at <= p.sent_at
        and c.closed_at is None
    )


def check(publishes: Iterable[Publish], clients: Iterable[ClientView], *, budget_ms: float) -> CheckResult:
    """Run every delivery invariant and return the violations and latency samples."""
    publishes = list(publishes)
    clients = list(clients)
    by_key: dict[str, Publish] = {}
    for p in publishes:
        by_key.setdefault(p.key, p)
    result = CheckResult()
    result.controls = {p.tenant: 0 for p in publishes}

    for c in clients:
        counts: Counter[str] = Counter()
        own_seqs: list[tuple[int, Publish]] = []
        for event, data, at in c.received:
            result.deliveries += 1
            key = canonical(data)
            p = by_key.get(key)
            if p is None and event == GATEWAY_ORIGINATED:
                # Gateways emit their own metrics_update (MET-2, MET-4); MET-2 judges those.
                result.gateway_originated += 1
                continue
            if p is None:
                near = next((q for q in publishes if q.type == event and q.tenant == c.tenant), None)
                result.violations.append(Violation(
                    "DLV-1", "Payload not JSON-equal to any published data",
                    f"client {c.name} ({c.tenant}) received {event!r} whose payload matches no published event",
                    "high", {"client": c.name, "tenant": c.tenant, "event": event, "received": data,
                             "nearest_published": near.envelope if near else None}))
                continue
            if p.tenant != c.tenant:
                result.violations.append(Violation(
                    "ISO-1", "Event delivered to another tenant",
                    f"client {c.name} of tenant {c.tenant!r} received event #{p.seq} of tenant {p.tenant!r}",
                    "high", {"client": c.name, "client_tenant": c.tenant, "published": p.envelope}))
                continue
            if event != p.type:
                result.violations.append(Violation(
                    "DLV-1", "Wrong event name",
                    f"client {c.name} received event #{p.seq} as {event!r}; it was published as {p.type!r}",
                    "high", {"client": c.name, "published": p.envelope, "received_as": event}))
            counts[key] += 1
            if counts[key] == 1:
                own_seqs.append((p.seq, p))
                result.own_deliveries += 1
                result.controls[p.tenant] = result.controls.get(p.tenant, 0) + 1
                latency_ms = (at - p.sent_at) * 1000
                result.latencies_ms[p.type].append(latency_ms)
                if latency_ms > budget_ms:
                    result.violations.append(Violation(
                        "DLV-2", "Delivery over the latency budget",
                        f"event #{p.seq} ({p.type}) reached {c.name} after {latency_ms:.0f} ms > {budget_ms:g} ms",
                        "high", {"client": c.name, "latency_ms": round(latency_ms, 1), "published": p.envelope}))
        for key, n in counts.items():
            if n > 1:
                p = by_key[key]
                for req in ("DLV-4", "TAB-1"):
                    result.violations.append(Violation(
                        req, "Event received more than once",
                        f"client {c.name} received event #{p.seq} ({p.type}) {n} times",
                        "high", {"client": c.name, "times": n, "published": p.envelope}))
        seqs = [s for s, _ in own_seqs]
        for (s1, p1), (s2, p2) in zip(own_seqs, own_seqs[1:]):
            if s2 < s1:
                result.violations.append(Violation(
                    "DLV-5", "Events of one tenant out of publish order",
                    f"client {c.name} received event #{s1} before #{s2}, but #{s2} was published first",
                    "high", {"client": c.name, "received_order": seqs[:50],
                             "first": p2.envelope, "second": p1.envelope}))
                break
        received_keys = set(counts)
        missing = [p for p in publishes if _expected(p, c) and p.key not in received_keys]
        if missing:
            for req in ("DLV-1", "TAB-1"):
                result.violations.append(Violation(
                    req, "Event not delivered",
                    f"client {c.name} ({c.tenant}) missed {len(missing)} of its tenant's events, "
                    f"first #{missing[0].seq} ({missing[0].type})",
                    "high", {"client": c.name, "missing_count": len(missing), "first_missing": missing[0].envelope,
                             "missing_types": sorted({p.type for p in missing})}))
    return result
