"""ROB-6: slow and silent clients are let go, and do not keep new clients out.

A client that connects and never becomes a user (a request that never completes, an Engine.IO
session that never sends its Socket.IO CONNECT) must be closed within the silent-client bound
(``--silent-close-s``, 60 s by default: socket.io's connectTimeout and Node's headersTimeout
meet it). The clients were opened at the start of the run on a gateway of their own and watched
in the background (harness/wire/silent.py), so this test only collects what they saw; it runs
last, like MET-3's idle window.
"""

from __future__ import annotations

import pytest

from realtime_conformance.harness import SilentEvidence

from .test_rob import _own_gateway

pytestmark = [pytest.mark.realtime, pytest.mark.asyncio, pytest.mark.rob]

CONNECT_BUDGET_MS = 1000.0  # CONN-3's
TOLERANCE_S = 1.0  # a close this much past the bound is still within it (timers, scheduling)


@pytest.mark.requirement("ROB-6")
@pytest.mark.background_evidence
async def test_silent_clients_are_closed_within_the_bound(conformance):
    _own_gateway(conformance)
    evidence: SilentEvidence = await conformance.silent_clients()
    conformance.record("silent_clients", evidence.summary())
    conformance.record("bound_s", evidence.bound_s)
    conformance.record("where", evidence.where)
    conformance.record("baseline_connect_ms", evidence.baseline_connect_ms)
    conformance.record("connect_ms_while_held", evidence.fresh_connect_ms)
    if evidence.not_opened:
        conformance.record("not_opened", evidence.not_opened)
    if evidence.error:
        conformance.unknown(f"the silent-client watch did not complete: {evidence.error}")
    if not evidence.closed_after_s:
        conformance.unknown("no silent client could be opened: " + "; ".join(f"{k}: {v}" for k, v in evidence.not_opened.items()))
    baseline = evidence.baseline_connect_ms
    if not baseline or any(ms is None for ms in baseline):
        conformance.unknown("a client with a valid token could not connect before any silent client was opened, so "
                            "whether the silent ones keep new clients out cannot be told: see CONN-1, AUTH-1")
    violations = []
    bound = evidence.bound_s
    late = {kind: [t for t in times if t is None or t > bound + TOLERANCE_S]
            for kind, times in evidence.closed_after_s.items()}
    late = {kind: times for kind, times in late.items() if times}
    if late:
        violations.append(conformance.violation(
            "Silent clients kept open",
            "; ".join(f"{kind}: {len(times)} of {len(evidence.closed_after_s[kind])} "
                      + ("never closed" if None in times else f"closed after {max(times):g} s")
                      for kind, times in late.items())
            + f" (the bound is {bound:g} s: --silent-close-s)", evidence.summary()))
    held = evidence.fresh_connect_ms
    refused = [ms for ms in held if ms is None]
    slow = [ms for ms in held if ms is not None and ms > CONNECT_BUDGET_MS]
    if refused or slow:
        violations.append(conformance.violation(
            "New clients kept out",
            f"while {sum(len(t) for t in evidence.closed_after_s.values())} silent clients held their connections, "
            f"{len(refused)} of {len(held)} new clients with valid tokens could not connect and {len(slow)} took over "
            f"{CONNECT_BUDGET_MS:g} ms (CONN-3's budget)", {"connect_ms": held, "baseline_connect_ms": baseline}))
    conformance.fail(violations)
