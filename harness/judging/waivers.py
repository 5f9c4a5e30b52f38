"""Waivers: requirements a team accepts as failing for now, each with a reason and an end date.

A gate is adopted gradually: a gateway that fails DLV-3 today can still be held to everything
else. The user's repository keeps a YAML file::

    waivers:
      - id: DLV-3
        reason: "p99 is 140 ms until the consumer rewrite (PLAT-123)"
        expires: 2027-01-31

A waived requirement that fails, is UNKNOWN or NON-STRICT is reported as WAIVED and does not
fail the run, through its expiry date. From the day after, the waiver no longer applies and
fails the run. A waiver whose requirement passes is reported as unused, so it gets removed.
The file is validated when the run starts; any mistake is a ``WaiverError`` naming the file,
the entry and the fix.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from realtime_conformance.harness.judging import catalogue as _catalogue

KEYS = ("id", "reason", "expires")
EXAMPLE = '{id: DLV-3, reason: "why it is accepted, and who fixes it", expires: 2027-01-31}'

# A waiver covers these verdicts; PASS makes it unused, N/A and SKIPPED leave it untested.
WAIVABLE = ("FAIL", "UNKNOWN", "NON-STRICT")


class WaiverError(ValueError):
    """The waiver file cannot be used; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class Waiver:
    id: str
    reason: str
    expires: _dt.date
    entry: int  # 1-based position in the file, for messages

    def expired(self, today: _dt.date) -> bool:
        """Valid through its expiry date; expired from the day after."""
        return today > self.expires

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "reason": self.reason, "expires": self.expires.isoformat()}


@dataclass(frozen=True)
class Waivers:
    path: Path
    entries: tuple[Waiver, ...]

    def get(self, requirement_id: str) -> Waiver | None:
        return next((w for w in self.entries if w.id == requirement_id), None)


def _date(value: Any) -> _dt.date | None:
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def load(path: Path) -> Waivers:
    """Read and validate a waiver file (see the module docstring for its shape)."""
    where = str(path)
    if not path.is_file():
        raise WaiverError(f"{where}: no such file; create it, or fix the path (relative paths resolve "
                          "against the folder of the ini file that names it, else the rootdir)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise WaiverError(f"{where}: not valid YAML ({problem}{at}); each entry looks like {EXAMPLE}") from None
    except UnicodeDecodeError:
        raise WaiverError(f"{where}: is not UTF-8 text; save it as UTF-8") from None
    except ValueError as exc:  # a date-shaped value that is no date (2027-13-01) fails inside the parser
        raise WaiverError(f"{where}: cannot be read ({exc}); write dates as YYYY-MM-DD, e.g. 2027-01-31") from None
    except OSError as exc:
        raise WaiverError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    if data is None:
        data = {"waivers": []}
    if not isinstance(data, dict) or set(data) != {"waivers"} or not isinstance(data["waivers"], (list, type(None))):
        raise WaiverError(f"{where}: expected one key, 'waivers', holding a list; e.g. waivers: [{EXAMPLE}]")
    entries: list[Waiver] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(data["waivers"] or [], start=1):
        label = f"{where}: waiver #{n}"
        if not isinstance(raw, dict):
            raise WaiverError(f"{label} is not a mapping; write it as {EXAMPLE}")
        rid = raw.get("id")
        if rid is not None:
            label += f" ({rid})"
        unknown = [str(k) for k in raw if k not in KEYS]
        if unknown:
            raise WaiverError(f"{label} has unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                              f"the keys are {', '.join(KEYS)}")
        if not isinstance(rid, str) or not rid.strip():
            raise WaiverError(f"{label} has no id; add the requirement ID it waives, e.g. id: DLV-3")
        rid = rid.strip()
        retired = _catalogue.retired_in(rid)
        if retired is not None:
            raise WaiverError(f"{label}: {rid} was retired in catalogue version {retired}; remove this waiver")
        try:
            _catalogue.get(rid)
        except KeyError as exc:
            raise WaiverError(f"{label}: {exc.args[0]}; see CONFORMANCE.md") from None
        if rid in seen:
            raise WaiverError(f"{label} repeats waiver #{seen[rid]}; keep one waiver per requirement")
        reason = raw.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise WaiverError(f'{label} has no reason; add reason: "why it is accepted, and who fixes it"')
        if raw.get("expires") is None:
            raise WaiverError(f"{label} has no expiry; add expires: YYYY-MM-DD (every waiver ends)")
        expires = _date(raw["expires"])
        if expires is None:
            raise WaiverError(f"{label}: expires {raw['expires']!r} is not a date; write expires: YYYY-MM-DD, "
                              "e.g. expires: 2027-01-31")
        seen[rid] = n
        entries.append(Waiver(rid, reason.strip(), expires, n))
    return Waivers(path, tuple(entries))


def apply(requirements: list[dict[str, Any]], waivers: Waivers | None, today: _dt.date) -> dict[str, Any] | None:
    """Mark waived requirements WAIVED (in place) and return the report's ``waivers`` section.

    Each entry gets a ``status``: ``applied`` (the requirement did not hold and is WAIVED),
    ``expired`` (it did not hold and the waiver has ended: the run fails), ``unused`` (it passed:
    remove the waiver), or ``not checked`` (N/A or SKIPPED in this run).
    """
    if waivers is None:
        return None
    by_id = {r["id"]: r for r in requirements}
    entries = []
    for waiver in waivers.entries:
        req = by_id.get(waiver.id)
        verdict = req["verdict"] if req else "SKIPPED"
        entry = {**waiver.as_dict(), "verdict": verdict}
        if verdict == "PASS":
            entry["status"] = "unused"
            entry["message"] = (f"waiver for {waiver.id} is unused: the requirement passes; "
                                f"remove it from {waivers.path.name}")
            if waiver.expired(today):
                entry["message"] += f" (it expired on {waiver.expires.isoformat()})"
        elif verdict not in WAIVABLE:
            entry["status"] = "not checked"
            entry["message"] = f"waiver for {waiver.id} not used: the requirement was {verdict} in this run"
        elif waiver.expired(today):
            entry["status"] = "expired"
            entry["message"] = (f"waiver for {waiver.id} expired on {waiver.expires.isoformat()}; "
                                "fix the defect or renew the waiver")
            assert req is not None
            req["waiver"] = {**waiver.as_dict(), "status": "expired"}
        else:
            entry["status"] = "applied"
            assert req is not None
            req["waiver"] = {**waiver.as_dict(), "status": "applied", "verdict": verdict}
            req["verdict"] = "WAIVED"
        entries.append(entry)
    return {"file": str(waivers.path), "entries": entries}
