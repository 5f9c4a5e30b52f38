"""The per-test handle suites use: the target, evidence recording, and verdict helpers.

A suite test asks ``conformance`` for a scenario, records what it measured, and
ends with ``judge`` (violations of its requirement fail it; a silent positive
control makes it UNKNOWN) or ``not_applicable`` when the target lacks a capability.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import pytest

from realtime_conformance.harness import capabilities as _capabilities
from realtime_conformance.harness.judging import catalogue as _catalogue
from realtime_conformance.harness.judging.checks import OWNER, CheckResult
from realtime_conformance.harness.judging.failures import ConformanceFailure, UnknownEvidence, Violation
from realtime_conformance.harness.wire.clients import TenantClient
from realtime_conformance.harness.wire.idle import IdleEvidence, watch_idle_tabs
from realtime_conformance.harness.wire.silent import SilentEvidence, watch_silent_clients
from realtime_conformance.harness.wire.scenario import Scenario

# The kinds of findings each requirement judges when its test does not say.
DEFAULT_KINDS: dict[str, tuple[str, ...]] = {
    "DLV-1": ("missing", "altered", "renamed", "unrecognised"),
    "DLV-2": ("late", "pending"),
    "DLV-4": ("duplicate",),
    "DLV-5": ("order",),
    "ISO-1": ("foreign",),
    "TAB-1": ("siblings",),
}
# Findings an unrecognisable event could explain away (it may be the "missing" one).
UNCERTAIN = frozenset({"missing", "pending", "siblings"})
from realtime_conformance.harness.settings import Settings
from realtime_conformance.harness.providers.target import Cluster, Instance, Target

NEEDS_REPLICAS = "needs --gateway-replicas 2 or more"
from realtime_conformance.harness.judging.verdicts import NA_PREFIX, TestRecord


class Conformance:
    """What one suite test works with."""

    def __init__(self, target: Target, record: TestRecord) -> None:
        self.target = target
        self._record = record

    @property
    def settings(self) -> Settings:
        return self.target.settings

    @property
    def tokens(self):  # -> TokenFactory
        return self.target.tokens

    @property
    def main(self) -> Instance:
        assert self.target.main is not None
        return self.target.main

    @property
    def instances(self) -> list[Instance]:
        """Every instance of the target, the main one first (one, unless it runs as a cluster)."""
        return list(self.target.instances)

    @property
    def cluster(self) -> Cluster:
        """The target's instances as a cluster; SKIPPED when the run has only one."""
        if self.target.cluster is None:
            pytest.skip(NEEDS_REPLICAS)
        return self.target.cluster

    def cluster_scenario(self, control_types: tuple[str, ...] | None = None) -> Scenario:
        """A scenario whose clients are spread over every instance, each reached directly."""
        return self.cluster.scenario(control_types)

    @property
    def requirement(self) -> str:
        return self._record.requirements[0]

    def scenario(self, control_types: tuple[str, ...] | None = None) -> Scenario:
        """A scenario against the main gateway instance."""
        return self.main.scenario(control_types)

    async def idle_tabs(self) -> IdleEvidence:
        """MET-3's idle window: from the watch that ran beside the other checks on a dedicated
        instance when the harness could start one, else measured now on the main instance."""
        window = self.settings.idle_window_s
        watch = self.target.idle_watch
        if watch is not None:
            evidence = await watch.evidence()
            if evidence.control_arrived or evidence.error is None:
                return evidence
            # The dedicated instance never got going (a gateway that cannot run twice?): measure here.
            self.record("idle_watch_error", evidence.error)
        return await watch_idle_tabs(self.main, window, where="the main instance, inside this test")

    async def silent_clients(self) -> SilentEvidence:
        """ROB-6's slow and silent clients: from the watch that ran beside the other checks on a
        dedicated instance, or measured now on one (a run that selected ROB-6 late, or alone)."""
        watch = self.target.silent_watch
        if watch is not None:
            return await watch.evidence()
        async with self.target.dedicated("silent") as instance:
            return await watch_silent_clients(instance, self.settings.silent_close_s, path=self.settings.socketio_path,
                                              where="a dedicated gateway instance, inside this test")

    # -- capabilities ---------------------------------------------------
    def require(self, capability: str, why: str = "") -> None:
        """Report N/A (not a failure) when the target declares it lacks ``capability``, one of
        harness/capabilities.py's (a name it does not know is a ValueError: a typo must not pass)."""
        _capabilities.validate(capability)
        if not self.settings.has(capability):
            how = ("the target is a URL the harness cannot restart" if capability == "restart"
                   and self.settings.target_kind == "url" else f"the target declares --lacks {capability}")
            pytest.skip(f"{NA_PREFIX}{how}{': ' + why if why else ''}")

    async def precondition_consuming(self, instance: Instance, *, after: str, blocked_by: str,
                                     timeout: float = 30.0) -> None:
        """A check's set-up needs the gateway consuming again (after a restart, a held broker link):
        when no consumer comes, that is another requirement's defect, so UNKNOWN naming it."""
        try:
            await instance.wait_ready(timeout)
        except TimeoutError:
            raise UnknownEvidence(f"blocked by {blocked_by}: no consumer on {instance.queue} within "
                                  f"{timeout:.0f} s of {after}") from None

    def not_applicable(self, why: str) -> None:
        """Report N/A (not a failure) for a reason other than a declared capability."""
        pytest.skip(f"{NA_PREFIX}{why}")

    def require_restartable_broker(self) -> None:
        if not getattr(self.target.broker, "restartable", False) or "broker-restart" in self.settings.lacks:
            pytest.skip(f"{NA_PREFIX}the broker is external; the harness cannot restart it (use --broker process)")

    # -- evidence -------------------------------------------------------
    def record(self, key: str, value: Any) -> None:
        self._record.evidence[key] = value

    def record_latencies(self, result: CheckResult) -> None:
        for event_type, values in result.latencies_ms.items():
            self._record.latencies_ms[event_type].extend(values)

    def record_reconnects(self, schedule: dict[str, Any]) -> None:
        self._record.reconnects.append(schedule)

    async def screenshot(self, tab: Any, caption: str) -> None:
        """A browser tab's screenshot as this check's evidence, taken at the moment of judgement
        and embedded in compliance.html beside the requirement (capped: see judging.verdicts)."""
        from realtime_conformance.harness.judging.verdicts import MAX_SCREENSHOT_BYTES, MAX_SCREENSHOTS_PER_TEST
        from realtime_conformance.harness.wire.browser import image

        if len(self._record.screenshots) >= MAX_SCREENSHOTS_PER_TEST:
            return
        try:
            data = await tab.screenshot()
        except Exception as exc:  # a closed page: the check's verdict does not depend on its picture
            self.record(f"screenshot failed ({caption})", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            return
        if len(data) > MAX_SCREENSHOT_BYTES:
            self.record(f"screenshot dropped ({caption})", f"{len(data)} bytes, over the {MAX_SCREENSHOT_BYTES} cap")
            return
        self._record.screenshots.append(image(data, caption))

    def record_timeline(self, t_ms: float, event: str) -> None:
        self._record.timeline.append({"t_ms": round(t_ms, 1), "event": event})

    # -- verdicts -------------------------------------------------------
    def fail(self, violations: Iterable[Violation]) -> None:
        """FAIL with these violations if there are any."""
        violations = list(violations)
        if violations:
            self._record.failures.extend(violations)
            raise ConformanceFailure(violations)

    def violation(self, title: str, message: str, example: dict[str, Any] | None = None,
                  requirement: str | None = None, severity: str = "high") -> Violation:
        return Violation(requirement or self.requirement, title, message, severity, example or {})  # type: ignore[arg-type]

    def unknown(self, reason: str) -> None:
        raise UnknownEvidence(reason)

    def judge(self, scenario: Scenario, *kinds: str, requirement: str | None = None,
              clients: Sequence[TenantClient] | None = None, positive_control: bool = True) -> CheckResult:
        """Check the scenario and FAIL on the findings of ``kinds``, filed under this test's requirement.

        ``kinds`` name the facts this requirement is about (see judging.checks.OWNER): ``missing``,
        ``pending``, ``altered``, ``renamed``, ``unrecognised``, ``foreign``, ``duplicate``, ``late``, ``order``,
        ``siblings``. Left out, they default to those the requirement owns (DLV-1: the payload
        kinds and missing; ISO-1: foreign; ...). Findings of other kinds are another requirement's
        business and are not filed here. A missing event, or tabs that differ, cannot be judged
        past events that arrived unrecognisable (they might be those): that is UNKNOWN, pointing
        at DLV-1. Nor can it be judged while an expected event is still pending (late is not lost:
        nothing published after it has reached that client): UNKNOWN, pointing at DLV-2. No delivery at all to a tenant that had events is UNKNOWN too (the positive
        control), never a PASS.
        """
        req = requirement or self.requirement
        _catalogue.get(req)
        kinds = kinds or DEFAULT_KINDS.get(req, ())
        unknown_kinds = sorted(set(kinds) - set(OWNER))
        if not kinds or unknown_kinds:
            raise ValueError(f"judge({req!r}): name the kinds of findings it is about, from {', '.join(OWNER)}"
                             + (f"; unknown: {', '.join(unknown_kinds)}" if unknown_kinds else ""))
        result = scenario.check(clients)
        self.record_latencies(result)
        for key, value in scenario.summary().items():
            self.record(key, value)
        self.record("own_deliveries", result.own_deliveries)
        if result.unrecognised:
            self.record("unrecognised_events", dict(result.unrecognised))
        owns_payloads = OWNER["unrecognised"] == req or "unrecognised" in kinds
        blocked = [] if owns_payloads else [
            f for f in result.of(*kinds) if f.kind in UNCERTAIN and result.unrecognised.get(f.client)]
        self.fail(f.as_violation(req) for f in result.of(*kinds) if f not in blocked)
        if "missing" in kinds and "pending" not in kinds:
            pending = result.of("pending")
            if pending:
                self.record("still_arriving", [f.example for f in pending][:5])
                raise UnknownEvidence(
                    f"still arriving: {pending[0].message}. Late cannot be told from lost until something "
                    "published later reaches that client: see DLV-2")
        if blocked:
            raise UnknownEvidence(
                f"{blocked[0].message}, but {sum(result.unrecognised.values())} event(s) arrived in a form that "
                "matches nothing published, so whether it was delivered cannot be told: events arrive reshaped, "
                "see DLV-1")
        if positive_control:
            self._require_controls(scenario, result)
        return result

    def controls(self, scenario: Scenario, clients: Sequence[TenantClient] | None = None) -> CheckResult:
        """UNKNOWN unless every tenant that had events published received some of them: proof that
        the gateway delivers here, so that what a check did not see means something."""
        result = scenario.check(clients)
        self.record("own_deliveries", result.own_deliveries)
        self._require_controls(scenario, result)
        return result

    def _require_controls(self, scenario: Scenario, result: CheckResult) -> None:
        if result.positive_control:
            return
        silent = sorted(t for t, n in result.controls.items() if n == 0)
        why = ("events arrive reshaped beyond recognition, see DLV-1" if result.unrecognised
               else f"see DLV-6 and DLV-1 for the types {', '.join(sorted({p.type for p in scenario.publishes}))}")
        raise UnknownEvidence(
            f"positive control failed: tenant(s) {', '.join(silent) or '(none published)'} received none of "
            f"their own events, so the absence of violations proves nothing ({why})")

    @property
    def control_type(self) -> str:
        """The event type this target delivers recognisably, for checks that need some event."""
        return self.main.scenario().control_type
