"""Compliance report: the JSON a CI gate reads and the HTML a release manager reads.

Both are rendered from one result dict (see ``write_reports``). Like Autobahn|Testsuite and
h2spec, cases are named by the requirement they check and the overall verdict comes first:
on the terminal line, at the top of the HTML page, and as the first key of the JSON.

This module depends only on the standard library and Jinja2 so it can render a report from
a saved ``compliance.json`` without importing the rest of the harness.
"""

from __future__ import annotations

import json
import re
import math
import os
import pathlib
import tempfile
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jinja2

from realtime_conformance.harness.redaction import strip_terminal_codes

__all__ = [
    "DEFAULT_BOUNDS",
    "VERDICTS",
    "histogram",
    "latency_summary",
    "ran_line",
    "render_html",
    "summary_details",
    "summary_line",
    "write_reports",
]

# Upper bucket edges in ms (a value v lands in the first bucket with v <= edge); one extra
# overflow bucket holds everything above the last edge. Spans sub-ms to the 1 s budget x 2.
DEFAULT_BOUNDS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)

# Display order; also the key order of "summary". WAIVED: a failure the user's waiver file accepts.
VERDICTS: tuple[str, ...] = ("PASS", "FAIL", "NON-STRICT", "UNKNOWN", "WAIVED", "N/A", "SKIPPED")

# Verdicts that need a reader's attention: expanded in the HTML, named on the summary line.
_ATTENTION = ("FAIL", "UNKNOWN", "NON-STRICT")

# Text marks go with the colours so a verdict never relies on colour alone.
_MARKS = {"PASS": "✓", "FAIL": "✗", "NON-STRICT": "!", "UNKNOWN": "?", "WAIVED": "≈", "N/A": "–", "SKIPPED": "»"}
_CSS_CLASS = {"PASS": "pass", "FAIL": "fail", "NON-STRICT": "nonstrict", "UNKNOWN": "unknown",
              "WAIVED": "waived", "N/A": "na", "SKIPPED": "skipped"}

_TEMPLATES = pathlib.Path(__file__).resolve().parent / "templates"
_MAX_IDS_ON_LINE = 8
_MAX_DETAIL_LINES = 20  # terminal lines under the COMPLIANCE line; the HTML has the rest
_MAX_DETAIL_CHARS = 200


# --------------------------------------------------------------------------- latency helpers

def _nearest_rank(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: an observed value, never an interpolation, so p99 is a real delivery."""
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def histogram(values_ms: Iterable[float], bounds_ms: Sequence[float] = DEFAULT_BOUNDS) -> dict:
    """Bucket counts for the report's bar chart: ``counts[i]`` holds values in (bounds[i-1], bounds[i]].

    ``counts`` has ``len(bounds_ms) + 1`` entries; the last is the overflow (> last bound), so
    nothing is silently dropped from the picture.
    """
    bounds = sorted(float(b) for b in bounds_ms)
    counts = [0] * (len(bounds) + 1)
    for value in values_ms:
        counts[bisect_left(bounds, float(value))] += 1
    return {"bounds_ms": [_plain_number(b) for b in bounds], "counts": counts}


def latency_summary(values_ms: Iterable[float], budget_ms: float,
                    bounds_ms: Sequence[float] = DEFAULT_BOUNDS) -> dict:
    """One "latency" entry of a requirement: count, nearest-rank p50/p95/p99, max, budget, histogram.

    With no values every statistic is None (not 0): "nothing measured" must not read as "fast".
    The budget is kept because it is configuration, not a measurement.
    """
    ordered = sorted(float(v) for v in values_ms)
    if not ordered:
        return {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None,
                "budget_ms": budget_ms, "histogram": None}
    return {
        "count": len(ordered),
        "p50_ms": _nearest_rank(ordered, 50),
        "p95_ms": _nearest_rank(ordered, 95),
        "p99_ms": _nearest_rank(ordered, 99),
        "max_ms": ordered[-1],
        "budget_ms": budget_ms,
        "histogram": histogram(ordered, bounds_ms),
    }


# --------------------------------------------------------------------------- verdict helpers

def _requirements(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in (result.get("requirements") or []) if isinstance(r, Mapping)]


def _summary(result: Mapping[str, Any]) -> dict[str, int]:
    """The given summary, or one counted from the requirements when the producer left it out."""
    given = result.get("summary")
    counts = {v: 0 for v in VERDICTS}
    if isinstance(given, Mapping):
        for key, value in given.items():
            counts[str(key)] = int(value or 0)
        return counts
    for req in _requirements(result):
        verdict = str(req.get("verdict") or "UNKNOWN")
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts


def _overall(result: Mapping[str, Any]) -> str:
    """The producer's verdict; if absent, the catalogue rule (any MUST FAIL/UNKNOWN fails the run)."""
    verdict = result.get("verdict")
    if verdict:
        return str(verdict)
    strict = bool(result.get("strict"))
    if _expired_waivers(result):
        return "FAIL"
    for req in _requirements(result):
        v = req.get("verdict")
        if v == "FAIL" or (v == "UNKNOWN" and req.get("level") == "MUST") or (strict and v == "NON-STRICT"):
            return "FAIL"
    return "PASS"


def _waiver_entries(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    section = result.get("waivers")
    if not isinstance(section, Mapping):
        return []
    return [w for w in (section.get("entries") or []) if isinstance(w, Mapping)]


def _expired_waivers(result: Mapping[str, Any]) -> list[str]:
    return [str(w.get("id")) for w in _waiver_entries(result) if w.get("status") == "expired"]


def _ids(result: Mapping[str, Any], verdict: str, level: str | None = None) -> list[str]:
    return [str(r.get("id")) for r in _requirements(result)
            if r.get("verdict") == verdict and (level is None or r.get("level") == level)]


def _id_list(ids: list[str]) -> str:
    if len(ids) <= _MAX_IDS_ON_LINE:
        return ", ".join(ids)
    return ", ".join(ids[:_MAX_IDS_ON_LINE]) + f" +{len(ids) - _MAX_IDS_ON_LINE} more"


def _problems(result: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """Labelled groups of requirement IDs that explain a verdict, most serious first."""
    groups = [
        ("MUST failed", _ids(result, "FAIL", "MUST")),
        ("SHOULD failed", [i for i in _ids(result, "FAIL") if i not in _ids(result, "FAIL", "MUST")]),
        ("unknown", _ids(result, "UNKNOWN")),
        ("waiver expired", _expired_waivers(result)),
        ("non-strict", _ids(result, "NON-STRICT")),
        ("waived", _ids(result, "WAIVED")),
    ]
    return [(label, ids) for label, ids in groups if ids]


def summary_line(result: Mapping[str, Any]) -> str:
    """The one line a terminal prints first: verdict, then the IDs that caused it, then counts.

    Example: ``COMPLIANCE: FAIL  (MUST failed: DLV-2, ISO-1; unknown: RECON-1) 41 PASS, 2 FAIL, ...``
    WAIVED is counted only when there is one, so runs without waivers read as before.
    """
    counts = _summary(result)
    tally = ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS if v != "WAIVED" or counts.get(v))
    problems = _problems(result)
    line = f"COMPLIANCE: {_overall(result)}  "
    if problems:
        line += "(" + "; ".join(f"{label}: {_id_list(ids)}" for label, ids in problems) + ") "
    line += tally
    if result.get("strict"):
        line += " [strict]"
    return line


def gate_line(result: Mapping[str, Any]) -> str:
    """The gate level the run used: how long MET-3 watched idle tabs, how many examples each generated check drew."""
    gate = result.get("gate")
    if not isinstance(gate, Mapping):
        return "gate level: not recorded"
    overridden = gate.get("overridden") or []
    return (f"gate level: {gate.get('level')} (idle window {_fmt_number(gate.get('idle_window_s'))} s, "
            f"{gate.get('examples')} examples per generated check"
            + (f"; set by hand: {', '.join(overridden)}" if overridden else "") + ")")


def _part(role: str, described: Any, replicas: Any = None) -> str:
    """One provider of the run in a few words: kind, address, then image, command or server."""
    if not isinstance(described, Mapping) or not described:
        return f"{role} not recorded"
    kind = str(described.get("kind") or "?")
    if kind == "none":
        return f"{role} none: {described.get('note') or 'none'}"
    where = described.get("url") or ""
    more = f" and {int(replicas) - 1} more instance(s)" if isinstance(replicas, int) and replicas > 1 else ""
    how = described.get("image") or described.get("command") or described.get("server") or ""
    return " ".join(p for p in (role, kind, str(where) + more, f"({how})" if how else "") if p)


def ran_line(result: Mapping[str, Any]) -> str:
    """What actually ran, once the target was up: the broker, the gateway and the Redis it was given."""
    env = result.get("environment") if isinstance(result.get("environment"), Mapping) else {}
    if not env.get("broker") and not env.get("gateway"):
        return "ran: no target was started (no selected test needed one)"
    return "ran: " + "; ".join((_part("broker", env.get("broker")),
                                _part("gateway", env.get("gateway"), env.get("replicas")),
                                _part("redis", env.get("redis"))))


def _fmt_number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _clip(text: str, limit: int = _MAX_DETAIL_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_details(result: Mapping[str, Any]) -> list[str]:
    """Lines after the summary line: each FAIL/UNKNOWN requirement with its reason, each waived or
    expired waiver, and a warning for each waiver that is no longer needed. One line each."""
    lines: list[str] = []
    for req in _requirements(result):
        verdict = req.get("verdict")
        if verdict in ("FAIL", "UNKNOWN"):
            lines.append("  " + _clip(f"{verdict} {req.get('id')}: {req.get('reason') or 'no reason recorded'}"))
        elif verdict == "WAIVED":
            waiver = req.get("waiver") if isinstance(req.get("waiver"), Mapping) else {}
            lines.append("  " + _clip(f"WAIVED {req.get('id')} (until {waiver.get('expires', '?')}): "
                                      f"{waiver.get('reason') or ''}; was {waiver.get('verdict', '?')}: "
                                      f"{req.get('reason') or 'no reason recorded'}"))
    if len(lines) > _MAX_DETAIL_LINES:
        lines = lines[:_MAX_DETAIL_LINES] + [f"  ... and {len(lines) - _MAX_DETAIL_LINES} more: see compliance.html"]
    for waiver in _waiver_entries(result):
        if waiver.get("status") == "expired":
            lines.append("  " + _clip(f"EXPIRED {waiver.get('message')}"))
        elif waiver.get("status") == "unused":
            lines.append("  " + _clip(f"warning: {waiver.get('message')}"))
    return lines


# --------------------------------------------------------------------------- HTML view model

def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _fmt_ms(value: Any) -> str:
    """Milliseconds for a reader: 3 significant decimals at most, '—' when not measured."""
    if value is None or value == "":
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "—"
    if abs(number) >= 100:
        return f"{number:,.0f} ms"
    return f"{number:.3g} ms" if abs(number) < 1 else f"{number:.1f} ms"


def _fmt_s(value: Any) -> str:
    if value is None:
        return "—"
    try:
        return f"{float(value):.2f} s"
    except (TypeError, ValueError):
        return str(value)


def _fmt_value(value: Any) -> str:
    """Compact text for evidence/settings values: scalars as-is, containers as one-line JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested environment dicts as dotted rows (``gateway.version``), so any shape fits one table."""
    if isinstance(value, Mapping):
        rows: list[tuple[str, str]] = []
        for key, sub in value.items():
            rows.extend(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    return [(prefix, _fmt_value(value))]


def _svg_histogram(hist: Mapping[str, Any] | None, budget_ms: Any) -> dict | None:
    """Geometry for an inline SVG bar chart; buckets reaching past the budget are drawn as 'over'."""
    if not isinstance(hist, Mapping):
        return None
    bounds = list(hist.get("bounds_ms") or [])
    counts = list(hist.get("counts") or [])
    if not counts:
        return None
    width, height, top, bottom, left = 640, 170, 18, 34, 8
    plot_h = height - top - bottom
    slot = (width - 2 * left) / len(counts)
    peak = max(counts) or 1
    try:
        budget = float(budget_ms) if budget_ms is not None else None
    except (TypeError, ValueError):
        budget = None
    bars = []
    for i, count in enumerate(counts):
        upper = float(bounds[i]) if i < len(bounds) else math.inf
        lower = float(bounds[i - 1]) if 0 < i <= len(bounds) else 0.0
        if i < len(bounds):
            label = f"≤{_plain_number(upper)}"
            rng = f"{_plain_number(lower)}–{_plain_number(upper)} ms"
        else:
            label = f">{_plain_number(lower)}" if bounds else "all"
            rng = f"over {_plain_number(lower)} ms"
        bar_h = 0.0 if count == 0 else max(1.5, plot_h * count / peak)
        x = left + i * slot
        bars.append({
            "x": round(x + slot * 0.12, 1), "w": round(slot * 0.76, 1),
            "y": round(top + plot_h - bar_h, 1), "h": round(bar_h, 1),
            "cx": round(x + slot / 2, 1), "count": count, "label": label, "range": rng,
            "over": budget is not None and upper > budget,
        })
    return {"width": width, "height": height, "bars": bars, "base_y": top + plot_h,
            "label_y": height - bottom + 16, "total": sum(counts),
            "any_over": any(b["over"] and b["count"] for b in bars)}


def _latency_rows(latency: Any) -> list[dict]:
    rows = []
    if not isinstance(latency, Mapping):
        return rows
    for event_type, stats in latency.items():
        if not isinstance(stats, Mapping):
            continue
        budget, worst = stats.get("budget_ms"), stats.get("max_ms")
        try:
            over = budget is not None and worst is not None and float(worst) > float(budget)
        except (TypeError, ValueError):
            over = False
        rows.append({
            "event": str(event_type), "count": stats.get("count", 0),
            "p50": _fmt_ms(stats.get("p50_ms")), "p95": _fmt_ms(stats.get("p95_ms")),
            "p99": _fmt_ms(stats.get("p99_ms")), "max": _fmt_ms(worst),
            "budget": _fmt_ms(budget), "over": over,
            "svg": _svg_histogram(stats.get("histogram"), budget),
        })
    return rows


def _reconnect_views(reconnects: Any) -> list[dict]:
    """Each client's attempts against the policy bounds, with the reason any attempt is out of them."""
    views = []
    for rec in reconnects or []:
        if not isinstance(rec, Mapping):
            continue
        policy = rec.get("policy") if isinstance(rec.get("policy"), Mapping) else {}
        limit = policy.get("attempts")
        rows = []
        for att in rec.get("attempts") or []:
            if not isinstance(att, Mapping):
                continue
            problems = []
            delay, low, high = att.get("delay_ms"), att.get("min_ms"), att.get("max_ms")
            try:
                if delay is not None and low is not None and float(delay) < float(low):
                    problems.append(f"{_fmt_ms(float(low) - float(delay))} too early")
                if delay is not None and high is not None and float(delay) > float(high):
                    problems.append(f"{_fmt_ms(float(delay) - float(high))} too late")
                if limit is not None and att.get("n") is not None and int(att["n"]) > int(limit):
                    problems.append(f"beyond the policy's {limit} attempts")
            except (TypeError, ValueError):
                pass
            rows.append({
                "n": att.get("n", "?"), "at": _fmt_ms(att.get("at_ms")), "delay": _fmt_ms(delay),
                "bounds": f"{_fmt_ms(low)} – {_fmt_ms(high)}",
                "ok": att.get("ok"), "problems": problems,
            })
        policy_text = ", ".join(f"{k} {_fmt_value(v)}" for k, v in policy.items()) if policy else "not given"
        views.append({
            "client": str(rec.get("client", "?")), "policy": policy_text, "rows": rows,
            "reconnected_at": rec.get("reconnected_at_ms"),
            "reconnected": _fmt_ms(rec.get("reconnected_at_ms")),
            "out_of_bounds": sum(1 for r in rows if r["problems"]),
        })
    return views


def _timeline_rows(timeline: Any) -> list[dict]:
    rows = []
    for item in timeline or []:
        if not isinstance(item, Mapping):
            continue
        t = item.get("t_ms")
        try:
            when = f"+{float(t) / 1000:.3f} s"
        except (TypeError, ValueError):
            when = "—" if t is None else str(t)
        rows.append({"t": when, "event": str(item.get("event", ""))})
    return rows


_IMAGE_TYPES = ("image/jpeg", "image/png")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


def _screenshot_views(shots: Any) -> list[dict]:
    """Embedded pictures only: a known image type and plain base64, so a saved report cannot inject markup."""
    out = []
    for s in shots or []:
        if (isinstance(s, Mapping) and s.get("mime") in _IMAGE_TYPES and isinstance(s.get("data"), str)
                and _BASE64.match(s["data"])):
            out.append({"src": f"data:{s['mime']};base64,{s['data']}", "caption": str(s.get("caption") or ""),
                        "kb": round(len(s["data"]) * 3 / 4 / 1024)})
    return out


def _requirement_view(req: Mapping[str, Any]) -> dict:
    verdict = str(req.get("verdict") or "UNKNOWN")
    evidence = req.get("evidence") if isinstance(req.get("evidence"), Mapping) else {}
    failures = []
    for f in req.get("failures") or []:
        if not isinstance(f, Mapping):
            continue
        failures.append({
            "title": str(f.get("title") or "Failure"), "severity": str(f.get("severity") or "unrated"),
            "message": f.get("message"),
            "example": _pretty(f["example"]) if f.get("example") is not None else None,
        })
    tests = []
    for t in req.get("tests") or []:
        if isinstance(t, Mapping):
            tests.append({"nodeid": str(t.get("nodeid", "?")), "outcome": str(t.get("outcome", "?")),
                          "verdict": t.get("verdict"), "duration": _fmt_s(t.get("duration_s")),
                          "message": t.get("message")})
    view = {
        "id": str(req.get("id") or "?"), "area": str(req.get("area") or ""),
        "level": str(req.get("level") or ""), "title": str(req.get("title") or ""),
        "checklist": req.get("checklist"), "verdict": verdict,
        "css": _CSS_CLASS.get(verdict, "unknown"), "mark": _MARKS.get(verdict, "?"),
        "reason": req.get("reason"),
        "waiver": req.get("waiver") if isinstance(req.get("waiver"), Mapping) else None,
        "evidence": [(str(k), _fmt_value(v)) for k, v in evidence.items()],
        "latency": _latency_rows(req.get("latency")),
        "failures": failures,
        "reconnects": _reconnect_views(req.get("reconnects")),
        "timeline": _timeline_rows(req.get("timeline")),
        "tests": tests,
        "open": verdict in _ATTENTION or verdict == "WAIVED",
        "screenshots": _screenshot_views(req.get("screenshots")),
        "screenshots_dropped": req.get("screenshots_dropped"),
    }
    view["has_detail"] = bool(view["latency"] or failures or view["reconnects"]
                              or view["timeline"] or tests)
    return view


def _groups(result: Mapping[str, Any], reqs: list[dict]) -> list[dict]:
    """Requirements by area in the given area order; unlisted areas follow, so nothing is hidden."""
    areas = [a for a in (result.get("areas") or []) if isinstance(a, Mapping)]
    titles = {str(a.get("id")): str(a.get("title") or "") for a in areas}
    order = list(titles)
    for req in reqs:
        if req["area"] not in titles:
            titles[req["area"]] = ""
            order.append(req["area"])
    groups = []
    for area in order:
        members = [r for r in reqs if r["area"] == area]
        if not members:
            continue
        tally = {v: sum(1 for r in members if r["verdict"] == v) for v in VERDICTS}
        groups.append({"id": area or "—", "title": titles[area], "requirements": members,
                       "tally": [(v, n, _CSS_CLASS[v]) for v, n in tally.items() if n]})
    return groups


def _target_text(target: Any) -> str:
    if not isinstance(target, Mapping):
        return "not recorded"
    kind = target.get("kind") or "target"
    where = target.get("url") or "unknown URL"
    extra = target.get("command") or target.get("image")
    return f"{kind} at {where}" + (f" ({extra})" if extra else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _headline(result: Mapping[str, Any], overall: str) -> str:
    """One plain sentence that tells a newcomer what the verdict means for this run."""
    must_failed = _ids(result, "FAIL", "MUST")
    unknown_must = _ids(result, "UNKNOWN", "MUST")
    waived = _ids(result, "WAIVED")
    if overall == "PASS":
        nonstrict = _ids(result, "NON-STRICT")
        tail = (f" {_count(len(nonstrict), 'recommended (SHOULD) requirement')} did not hold; see below."
                if nonstrict else "")
        if waived:
            return ("Every mandatory (MUST) requirement that was checked holds, except "
                    f"{_count(len(waived), 'waived requirement')} ({', '.join(waived)})." + tail)
        return "Every mandatory (MUST) requirement that was checked holds." + tail
    bits = []
    expired = _expired_waivers(result)
    if expired:
        bits.append(f"{_count(len(expired), 'waiver')} expired ({', '.join(expired)})")
    if must_failed:
        bits.append(f"{_count(len(must_failed), 'mandatory (MUST) requirement')} failed")
    if unknown_must:
        bits.append(f"{_count(len(unknown_must), 'mandatory requirement')} could not be checked (UNKNOWN)")
    other = [i for i in _ids(result, "FAIL") if i not in must_failed]
    if other:
        bits.append(f"{_count(len(other), 'other requirement')} failed")
    if result.get("strict") and _ids(result, "NON-STRICT"):
        bits.append("strict mode counts failed SHOULD requirements")
    if not bits:
        return "The run did not pass."
    return "The gateway does not conform: " + "; ".join(bits) + "."


def _context(result: Mapping[str, Any]) -> dict:
    overall = _overall(result)
    counts = _summary(result)
    reqs = [_requirement_view(r) for r in _requirements(result)]
    env = result.get("environment") if isinstance(result.get("environment"), Mapping) else {}
    settings = result.get("settings") if isinstance(result.get("settings"), Mapping) else {}
    logs = result.get("logs") if isinstance(result.get("logs"), Mapping) else {}
    waivers = result.get("waivers") if isinstance(result.get("waivers"), Mapping) else None
    return {
        "overall": overall,
        "overall_css": _CSS_CLASS.get(overall, "unknown"),
        "overall_mark": _MARKS.get(overall, "?"),
        "headline": _headline(result, overall),
        "line": summary_line(result),
        "counts": [(v, counts.get(v, 0), _CSS_CLASS[v], _MARKS[v]) for v in VERDICTS],
        "attention": [r for r in reqs if r["open"]],
        "strict": bool(result.get("strict")),
        "target": _target_text(result.get("target")),
        "ran": ran_line(result).removeprefix("ran: "),
        "generated_at": result.get("generated_at") or "not recorded",
        "duration": _fmt_s(result.get("duration_s")),
        "harness_version": env.get("harness_version"),
        "groups": _groups(result, reqs),
        "total": len(reqs),
        "environment": _flatten(env),
        "settings": [(str(k), _fmt_value(v)) for k, v in settings.items()],
        "logs": [(str(k), strip_terminal_codes(str(v))) for k, v in logs.items() if v],
        "catalogue_version": result.get("catalogue_version"),
        "gate": gate_line(result).removeprefix("gate level: ") if result.get("gate") else None,
        "catalogue_pinned": bool(result.get("catalogue_pinned")),
        "waivers_file": str(waivers.get("file") or "") if waivers else None,
        "waivers": [{"id": str(w.get("id")), "reason": w.get("reason"), "expires": w.get("expires"),
                     "status": str(w.get("status") or "?"), "verdict": w.get("verdict"),
                     "message": w.get("message"),
                     "css": {"applied": "waived", "expired": "fail", "unused": "nonstrict"}.get(
                         str(w.get("status")), "skipped")}
                    for w in _waiver_entries(result)],
    }


_ENV: jinja2.Environment | None = None


def _environment() -> jinja2.Environment:
    """Autoescape is forced on: payloads under test carry ``<script>`` and must show as text."""
    global _ENV
    if _ENV is None:
        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _ENV


def render_html(result: Mapping[str, Any]) -> str:
    """One self-contained HTML page (inline CSS and SVG, no scripts, no network) for a human reader."""
    return _environment().get_template("compliance.html.j2").render(**_context(result))


# --------------------------------------------------------------------------- writing

def _write_atomic(path: pathlib.Path, text: str) -> None:
    """Write via a temp file + rename so a CI gate never reads a half-written report."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _without_images(result: Mapping[str, Any]) -> Mapping[str, Any]:
    """compliance.json keeps each screenshot's caption and size; the pictures are in compliance.html."""
    reqs = result.get("requirements")
    if not isinstance(reqs, list) or not any(isinstance(r, Mapping) and r.get("screenshots") for r in reqs):
        return result
    slim = [{**r, "screenshots": [{k: v for k, v in s.items() if k != "data"} for s in r["screenshots"]]}
            if isinstance(r, Mapping) and r.get("screenshots") else r for r in reqs]
    return {**result, "requirements": slim}


def write_reports(result: Mapping[str, Any], directory: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write ``compliance.json`` (for CI) and ``compliance.html`` (for people) into ``directory``.

    The HTML is rendered before anything is written, so a template error leaves no stale pair
    behind that disagrees with itself.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_text = json.dumps(_without_images(result), indent=2, sort_keys=False, ensure_ascii=False, default=str) + "\n"
    html_text = render_html(result)
    paths = {"json": directory / "compliance.json", "html": directory / "compliance.html"}
    _write_atomic(paths["json"], json_text)
    _write_atomic(paths["html"], html_text)
    return paths
