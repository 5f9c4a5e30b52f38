"""From test outcomes to requirement verdicts, and the result the reports are made of.

A test names its requirements with ``@pytest.mark.requirement("ID")``. Each
test's outcome becomes a verdict; a requirement's verdict is the worst of its
tests'. Missing evidence is UNKNOWN, never PASS; a requirement with no test
that ran is UNKNOWN unless it was deselected on purpose (SKIPPED). A failing
requirement the user's waiver file accepts (until its expiry date) is WAIVED.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import pytest

from realtime_conformance.harness.judging import catalogue as _catalogue
from realtime_conformance.harness.judging import waivers as _waivers
from realtime_conformance.harness.judging.failures import ConformanceFailure, UnknownEvidence, Violation
from realtime_conformance.harness.report.render import VERDICTS, latency_summary

NA_PREFIX = "N/A: "
NON_STRICT_PREFIX = "NON-STRICT: "
WAIVED_PREFIX = "WAIVED: "

# The report's gateway and broker log tails are kept unless every requirement is one of these.
_QUIET = ("PASS", "N/A", "SKIPPED")

# Worst first: the order a requirement's verdict is chosen in.
_SEVERITY = ("FAIL", "UNKNOWN", "NON-STRICT", "PASS", "N/A", "SKIPPED")


@dataclass
class TestRecord:
    """What one test established, under the requirement IDs it carries."""

    nodeid: str
    requirements: list[str]
    outcome: str = "not run"
    verdict: str = "UNKNOWN"
    message: str | None = None
    duration_s: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[Violation] = field(default_factory=list)
    reconnects: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    screenshots: list[dict[str, Any]] = field(default_factory=list)  # browser checks: embedded images

    def as_test(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "outcome": self.outcome, "verdict": self.verdict,
                "duration_s": round(self.duration_s, 3), "message": self.message}


def verdict_for(level: str, outcome: str, excinfo_type: type | None, skip_reason: str | None,
                strict: bool) -> str:
    """The verdict of one test phase's outcome."""
    if outcome == "passed":
        return "PASS"
    if outcome == "skipped":
        reason = skip_reason or ""
        if reason.startswith(NA_PREFIX):
            return "N/A"
        return "SKIPPED"
    if excinfo_type is not None and issubclass(excinfo_type, UnknownEvidence):
        return "UNKNOWN"
    if excinfo_type is not None and not issubclass(excinfo_type, (AssertionError, ConformanceFailure, pytest.fail.Exception)):
        # The harness could not run the check (setup error, crash): no evidence either way.
        return "UNKNOWN"
    if level == "SHOULD" and not strict:
        return "NON-STRICT"
    return "FAIL"


# compliance.html embeds screenshots, so it stays one offline file; these caps keep it bounded:
# at most MAX_SCREENSHOTS_PER_TEST per test (Conformance.screenshot), MAX_SCREENSHOT_BYTES each,
# MAX_SCREENSHOTS in the whole report (the first ones kept, in catalogue order).
MAX_SCREENSHOTS_PER_TEST = 3
MAX_SCREENSHOT_BYTES = 150_000
MAX_SCREENSHOTS = 24


def _cap_screenshots(requirements: list[dict[str, Any]]) -> None:
    """Drop screenshots past the report's cap, saying so on the requirement that lost them."""
    kept = 0
    for entry in requirements:
        shots = entry.get("screenshots") or []
        room = max(0, MAX_SCREENSHOTS - kept)
        if len(shots) > room:
            entry["screenshots_dropped"] = len(shots) - room
            entry["screenshots"] = shots[:room]
        kept += len(entry.get("screenshots") or [])


@dataclass
class Run:
    """Everything the run learnt, keyed by test; turned into the report at the end."""

    strict: bool
    budget_ms: float = 1000.0
    selected: frozenset[str] = frozenset()  # --requirements; empty means all
    records: dict[str, TestRecord] = field(default_factory=dict)
    deselected: dict[str, str] = field(default_factory=dict)  # requirement -> reason
    started: float = field(default_factory=time.time)
    waivers: _waivers.Waivers | None = None
    today: date = field(default_factory=date.today)  # one date for the whole run's waiver expiries
    catalogue_version: str = _catalogue.CATALOGUE_VERSION
    catalogue_pinned: bool = False

    def waived(self, requirements: list[str]) -> list[_waivers.Waiver]:
        """The waivers that cover a test that failed: one in force for each of its requirements, or none."""
        if self.waivers is None:
            return []
        found = [self.waivers.get(rid) for rid in requirements]
        if not found or any(w is None or w.expired(self.today) for w in found):
            return []
        return [w for w in found if w is not None]

    def record(self, nodeid: str, requirements: list[str]) -> TestRecord:
        if nodeid not in self.records:
            self.records[nodeid] = TestRecord(nodeid, requirements)
        return self.records[nodeid]

    def requirement_verdicts(self) -> list[dict[str, Any]]:
        by_req: dict[str, list[TestRecord]] = defaultdict(list)
        for rec in self.records.values():
            for rid in rec.requirements:
                by_req[rid].append(rec)
        out = []
        for req in _catalogue.ACTIVE:
            recs = by_req.get(req.id, [])
            entry: dict[str, Any] = {
                "id": req.id, "area": req.area, "level": req.level, "title": req.title,
                "checklist": req.checklist, "tests": [r.as_test() for r in recs],
                "evidence": {}, "failures": [], "reason": None,
            }
            ran = [r for r in recs if r.outcome != "not run"]
            if not ran:
                if self.selected and req.id not in self.selected:
                    entry["verdict"], entry["reason"] = "SKIPPED", "not selected by --requirements"
                elif req.id in self.deselected:
                    entry["verdict"], entry["reason"] = "SKIPPED", self.deselected[req.id]
                else:
                    entry["verdict"], entry["reason"] = "UNKNOWN", "no test of this requirement ran"
            else:
                verdicts = [r.verdict for r in ran]
                entry["verdict"] = min(verdicts, key=_SEVERITY.index)
                if self.strict and entry["verdict"] == "NON-STRICT":
                    entry["verdict"] = "FAIL"
                reasons = [r.message for r in ran if r.verdict == entry["verdict"] and r.message]
                entry["reason"] = reasons[0] if reasons and entry["verdict"] != "PASS" else None
            latencies: dict[str, list[float]] = defaultdict(list)
            for r in ran:
                for key, value in r.evidence.items():
                    if entry["evidence"].get(key) == value:
                        continue  # the same fact from another test of this requirement
                    name = key if key not in entry["evidence"] else f"{key} ({r.nodeid.rsplit('::', 1)[-1]})"
                    entry["evidence"][name] = value
                for event_type, values in r.latencies_ms.items():
                    latencies[event_type].extend(values)
                entry["failures"] += [v.as_dict() for v in r.failures if v.requirement == req.id]
                if r.reconnects:
                    entry.setdefault("reconnects", []).extend(r.reconnects)
                if r.timeline:
                    entry.setdefault("timeline", []).extend(r.timeline)
                if r.screenshots:
                    entry.setdefault("screenshots", []).extend(r.screenshots)
            if latencies:
                entry["latency"] = {t: latency_summary(v, self.budget_ms) for t, v in sorted(latencies.items())}
            out.append(entry)
        return out

    def result(self, *, settings: dict[str, Any], target: dict[str, Any], environment: dict[str, Any],
               logs: dict[str, str] | None) -> dict[str, Any]:
        """The report's data. Logs are kept when any requirement is not PASS, N/A or SKIPPED."""
        requirements = self.requirement_verdicts()
        _cap_screenshots(requirements)
        waivers = _waivers.apply(requirements, self.waivers, self.today)
        summary = {v: 0 for v in VERDICTS}
        for entry in requirements:
            summary[entry["verdict"]] += 1
        failed = any(e["verdict"] in ("FAIL", "UNKNOWN") and (e["level"] == "MUST" or self.strict)
                     for e in requirements)
        failed = failed or any(w["status"] == "expired" for w in (waivers or {}).get("entries", []))
        result: dict[str, Any] = {
            "verdict": "FAIL" if failed else "PASS",
            "summary": summary,
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "duration_s": round(time.time() - self.started, 1),
            "strict": self.strict,
            "catalogue_version": self.catalogue_version,
            "catalogue_pinned": self.catalogue_pinned,
            "target": target,
            "environment": environment,
            "settings": settings,
            "areas": [{"id": k, "title": v} for k, v in _catalogue.AREAS.items()],
            "requirements": requirements,
        }
        if waivers is not None:
            result["waivers"] = waivers
        if logs and any(e["verdict"] not in _QUIET for e in requirements):
            result["logs"] = logs
        return result
