"""Failures as typed data: each names its requirement, a title, a message, a severity, an example.

Tests raise ``ConformanceFailure`` (a FAIL) or ``UnknownEvidence`` (an UNKNOWN:
no evidence either way, never a pass); the plugin turns them into verdicts and
the report shows each violation with its minimal reproducer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["high", "medium", "low"]


@dataclass(frozen=True)
class Violation:
    requirement: str
    title: str
    message: str
    severity: Severity = "high"
    example: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"[{self.requirement}] {self.title}: {self.message}"


class ConformanceFailure(AssertionError):
    """The gateway broke a requirement; carries the violations as data."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = list(violations)
        shown = "\n".join(f"  - {v}" for v in self.violations[:5])
        more = f"\n  ... and {len(self.violations) - 5} more" if len(self.violations) > 5 else ""
        listing = f"\n{len(self.violations)} violations:\n{shown}{more}" if len(self.violations) > 1 else ""
        super().__init__(self.headline + listing)

    @property
    def headline(self) -> str:
        """The first violation, named: what a report's reason and the terminal summary show."""
        if not self.violations:
            return "no violation recorded"
        first = self.violations[0]
        rest = len(self.violations) - 1
        return f"{first.title}: {first.message}" + (f" (and {rest} more)" if rest else "")


class UnknownEvidence(Exception):
    """The check could not observe what it needs (e.g. the positive control saw nothing)."""

    def __init__(self, reason: str, violations: list[Violation] | None = None) -> None:
        self.reason = reason
        self.violations = list(violations or [])
        super().__init__(f"UNKNOWN: {reason}")
