"""The per-test handle suites use: the target, evidence recording, and verdict helpers.

A suite test asks ``conformance`` for a scenario, records what it measured, and
ends with ``judge`` (violations of its requirement fail it; a silent positive
control makes it UNKNOWN) or ``not_applicable`` when the target lacks a capability.
"""

from __future__ import annotations

from typing import Any, Iterable

import pytest

from realtime_conformance.harness.judging import catalogue as _catalogue
from realtime_conformance.harness.judging.checks import CheckResult
from realtime_conformance.harness.judging.failures import ConformanceFailure, UnknownEvidence, Violation
from realtime_conformance.harness.wire.scenario import Scenario
from realtime_conformance.harness.settings import Settings
from realtime_conformance.harness.providers.target import Instance, Target
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
    def requirement(self) -> str:
        return self._record.requirements[0]

    def scenario(self) -> Scenario:
        """A scenario against the main gateway instance."""
        return self.main.scenario()

    # -- capabilities ---------------------------------------------------
    def require(self, capability: str, why: str = "") -> None:
        """Report N/A (not a failure) when the target declares it lacks ``capability``."""
        if not self.settings.has(capability):
            how = ("the target is a URL the harness cannot restart" if capability == "restart"
                   and self.settings.target_kind == "url" else f"the target declares --lacks {capability}")
            pytest.skip(f"{NA_PREFIX}{how}{': ' + why if why else ''}")

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

    def judge(self, scenario: Scenario, requirement: str | None = None, *, as_: Iterable[str] = (),
              positive_control: bool = True) -> CheckResult:
        """Check the scenario; FAIL on violations of ``requirement`` (or of ``as_``, relabelled),
        UNKNOWN if the positive control saw nothing, else record the evidence and return."""
        req = requirement or self.requirement
        _catalogue.get(req)
        result = scenario.check()
        self.record_latencies(result)
        for key, value in scenario.summary().items():
            self.record(key, value)
        self.record("own_deliveries", result.own_deliveries)
        relabel = set(as_)
        mine = [v for v in result.violations if v.requirement == req]
        mine += [Violation(req, v.title, v.message, v.severity, {**v.example, "as": v.requirement})
                 for v in result.violations if v.requirement in relabel]
        self.fail(mine)
        if positive_control and not result.positive_control:
            silent = sorted(t for t, n in result.controls.items() if n == 0)
            raise UnknownEvidence(
                f"positive control failed: tenant(s) {', '.join(silent) or '(none published)'} received none of "
                "their own events, so the absence of violations proves nothing")
        return result
