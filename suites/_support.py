"""Small pieces several suites share: generated plans carried out, and the refusal check."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from realtime_conformance.harness import Conformance, Scenario, TenantClient, samples


def usable(plan, sc: Scenario) -> list:
    """The plan with each event of a type this target does not deliver recognisably replaced by a
    sample of the control type, for the same tenant at the same place: the interleaving stays."""
    return [(i, t, d) if t in sc.control_types else (i, sc.control_type, samples.sample(sc.control_type, n))
            for n, (i, t, d) in enumerate(plan.events)]


@contextlib.asynccontextmanager
async def planned(conformance: Conformance, plan, *, all_types: bool = False,
                  across_instances: bool = False) -> AsyncIterator[Scenario]:
    """A generated plan carried out: its tabs connected, its interleaving published and delivered.

    Types the target does not deliver recognisably are replaced by its control type, unless
    ``all_types`` (DLV-1, which judges payloads, wants every type); the evidence says which.
    ``across_instances`` spreads the tabs over the target's instances, each tenant with at
    least one tab on every instance."""
    scenario = conformance.cluster_scenario() if across_instances else conformance.scenario()
    async with scenario as sc:
        tenants = [sc.tenant() for _ in plan.tabs]
        least = len(sc.urls) if across_instances else 1
        for tenant, tabs in zip(tenants, plan.tabs):
            await sc.connect(tenant, tabs=max(tabs, least))
        events = plan.events if all_types else usable(plan, sc)
        replaced = sorted({t for _, t, _ in plan.events} - set(sc.control_types)) if not all_types else []
        if replaced:
            conformance.record("types_replaced", f"{', '.join(replaced)} (not delivered recognisably to a fresh "
                               f"client: see DLV-6, DLV-1) sent as {sc.control_type}")
        for index, event_type, data in events:
            await sc.publish(tenants[index], event_type, data)
        await sc.settle()
        yield sc


async def control_client(conformance: Conformance, sc: Scenario, tenant: str) -> TenantClient:
    """A valid client of ``tenant``: proves the gateway accepts good tokens, so refusals mean something."""
    clients = await sc.connect(tenant)  # raises UnknownEvidence if even a valid token is refused
    return clients[0]


async def expect_refused(conformance: Conformance, sc: Scenario, tenant: str, *, label: str,
                         token: Any = None, auth: dict | None = None, query: str = "",
                         need_connect_error: bool = True) -> TenantClient:
    """Connect a client that must be refused; then prove with a positive control that
    the gateway delivers to valid clients of the same tenant while this one gets nothing."""
    await control_client(conformance, sc, tenant)  # the gateway does accept good tokens
    bad = sc.client(tenant, name=f"{tenant}/{label}", token=token, auth=auth, query=query, expects_events=False)
    accepted = await bad.connect(timeout=5)
    await sc.publish_control(tenant)
    await sc.settle()
    violations = []
    if accepted:
        violations.append(conformance.violation(
            f"{label} accepted", f"a client presenting {label} was connected (sid {bad.sio.get_sid()})",
            {"auth": _shown(auth if auth is not None else {"token": token}), "query": query}))
    elif need_connect_error and not bad.connect_errors:
        violations.append(conformance.violation(
            f"{label}: no connect_error", "the handshake was not answered with a refusal (timed out)",
            {"auth": _shown(auth if auth is not None else {"token": token})}))
    if bad.received:
        violations.append(conformance.violation(
            f"{label} client received events", f"{len(bad.received)} event(s) reached a refused client",
            {"first": {"event": bad.received[0].event, "data": bad.received[0].data}}))
    conformance.record(f"{label}: connect_error", bad.connect_errors[-1].data if bad.connect_errors else None)
    conformance.fail(violations)
    conformance.controls(sc)  # the valid client got its event, so the refused one's silence means something
    return bad


def _shown(auth: Any) -> Any:
    """Tokens in reports: header and claims readable, signature cut."""
    if isinstance(auth, dict) and isinstance(auth.get("token"), str):
        token = auth["token"]
        return {**auth, "token": token.rsplit(".", 1)[0] + ".<signature>" if token.count(".") == 2 else token}
    return auth


def policy_window(policy) -> float:
    """Longest a client following ``policy`` may take to reconnect: every backoff at its
    maximum, plus 2 s per attempt for the handshake itself."""
    return sum(policy.bounds(n)[1] for n in range(1, policy.attempts + 1)) + 2.0 * policy.attempts


def schedule_evidence(tab, policy) -> dict:
    """A tab's reconnect attempts against the policy, in the report's shape."""
    live = [t for t, s in tab.state_history if s == "live"]
    noticed = next((t for t, s in tab.state_history if s == "warning"), None)
    return {
        "client": tab.name,
        "policy": {"attempts": policy.attempts, "delay_ms": policy.delay * 1000,
                   "max_ms": policy.delay_max * 1000, "jitter": policy.randomization},
        "attempts": tab.reconnect_schedule(),
        "reconnected_at_ms": round((live[-1] - noticed) * 1000, 1) if noticed and len(live) > 1 else None,
    }


def out_of_policy(tab, policy, tolerance_ms: float = 250.0) -> list[dict]:
    """Attempts whose measured wait fell outside the policy's bounds (by more than the tolerance)."""
    bad = []
    for row in tab.reconnect_schedule():
        waited = row.get("waited_ms")
        if waited is not None and not (row["min_ms"] - tolerance_ms <= waited <= row["max_ms"] + tolerance_ms):
            bad.append(row)
    return bad
