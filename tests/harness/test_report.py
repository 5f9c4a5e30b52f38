"""The compliance report must lead with the verdict, stay offline, and show hostile payloads as text."""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from realtime_conformance.harness.report.render import (
    DEFAULT_BOUNDS,
    gate_line,
    histogram,
    latency_summary,
    render_html,
    summary_details,
    summary_line,
    write_reports,
)

HOSTILE = "<script>alert(1)</script>"
RTL_EMOJI = "مرحبا بالعالم 🚀 שלום"


def _test(nodeid: str, outcome: str, verdict: str, message: str | None = None) -> dict:
    return {"nodeid": nodeid, "outcome": outcome, "verdict": verdict, "duration_s": 0.42, "message": message}


def sample_result() -> dict:
    """One requirement per verdict, with every optional section present somewhere."""
    latencies = [1.5, 2.0, 3.0, 4.0, 8.0, 30.0, 1500.0]
    return {
        "verdict": "FAIL",
        "summary": {"PASS": 1, "FAIL": 1, "NON-STRICT": 1, "UNKNOWN": 1, "N/A": 1, "SKIPPED": 1},
        "generated_at": "2026-11-28T04:00:00Z",
        "duration_s": 93.2,
        "strict": False,
        "target": {"kind": "process", "url": "http://127.0.0.1:40123", "command": "python -m gateway", "image": None},
        "environment": {
            "harness_version": "0.1.0", "python": "3.11.7", "platform": "Linux-6.1-x86_64",
            "packages": {"python-socketio": "5.18.1", "aio-pika": "9.4.1"},
            "gateway": {"kind": "process", "url": "http://127.0.0.1:40123", "version": "0.1.0"},
            "broker": {"kind": "process", "url": "amqp://127.0.0.1:1234/", "version": "3.10.8"},
        },
        "settings": {"gateway_url": "http://127.0.0.1:40123", "latency_budget_ms": 1000, "jwt_secret": "***"},
        "areas": [
            {"id": "CONN", "title": "Transport and handshake"},
            {"id": "DLV", "title": "Delivery"},
            {"id": "ISO", "title": "Tenant isolation"},
            {"id": "RECON", "title": "Reconnection"},
            {"id": "REST", "title": "The manual refresh path"},
        ],
        "requirements": [
            {"id": "CONN-1", "area": "CONN", "level": "MUST",
             "title": "Socket.IO v4 connections over websocket are accepted",
             "checklist": "Frontend connects to port 3015", "verdict": "PASS", "reason": None,
             "tests": [_test("suites/test_conn.py::test_websocket", "passed", "PASS")],
             "evidence": {"connects": 20, "transport": "websocket"}},
            {"id": "DLV-2", "area": "DLV", "level": "MUST",
             "title": "publish-to-receive latency is within the budget for every delivery",
             "checklist": "<1 second fresh data", "verdict": "FAIL", "reason": None,
             "tests": [_test("suites/test_delivery.py::test_latency", "failed", "FAIL", "1 delivery over budget")],
             "evidence": {"deliveries": 7, "clients": 6, "tenants": ["t1", "t2"]},
             "latency": {"new_message": latency_summary(latencies, 1000)},
             "failures": [{"requirement": "DLV-2", "title": "Delivery over the latency budget",
                           "message": f"tab-3 waited 1500 ms for {RTL_EMOJI}", "severity": "high",
                           "example": {"client": "tab-3", "published": {"type": "new_message",
                                                                        "data": {"text": HOSTILE, "name": RTL_EMOJI}},
                                       "latency_ms": 1500.0}}],
             "timeline": [{"t_ms": 0.0, "event": "fault injected: broker SIGKILL"},
                          {"t_ms": 6400.2, "event": "first event after recovery"}]},
            {"id": "DLV-3", "area": "DLV", "level": "SHOULD", "title": "p99 latency is at most 100 ms",
             "checklist": None, "verdict": "NON-STRICT", "reason": "p99 was 1500 ms",
             "tests": [_test("suites/test_delivery.py::test_p99", "failed", "NON-STRICT")], "evidence": {}},
            {"id": "RECON-1", "area": "RECON", "level": "MUST",
             "title": "clients reconnect within the policy after a gateway restart",
             "checklist": "Reconnect: auto-reconnects with backoff", "verdict": "UNKNOWN",
             "reason": "the positive control received nothing after the restart",
             "tests": [_test("suites/test_recon.py::test_restart", "failed", "UNKNOWN")],
             "evidence": {"clients": 3},
             "reconnects": [{"client": "tab-1",
                             "policy": {"attempts": 5, "delay_ms": 1000, "max_ms": 5000, "jitter": 0.5},
                             "attempts": [
                                 {"n": 1, "at_ms": 812.0, "delay_ms": 812.0, "min_ms": 500, "max_ms": 1500, "ok": False},
                                 {"n": 2, "at_ms": 4000.0, "delay_ms": 3188.0, "min_ms": 1000, "max_ms": 3000, "ok": True},
                             ],
                             "reconnected_at_ms": 4000.0}]},
            {"id": "REST-1", "area": "REST", "level": "MUST", "title": "REST endpoints answer while the socket is down",
             "checklist": None, "verdict": "N/A", "reason": "target declares no REST API", "tests": [], "evidence": {}},
            {"id": "ISO-4", "area": "ISO", "level": "MUST", "title": "REST endpoints serve only the token's tenant",
             "checklist": None, "verdict": "SKIPPED", "reason": "excluded by -k 'not rest'",
             "tests": [_test("suites/test_iso.py::test_rest", "skipped", "SKIPPED")], "evidence": {}},
        ],
        "logs": {"gateway": f"ERROR consumer lost {HOSTILE}\n", "broker": "=INFO REPORT==== ok"},
    }


class _TextCollector(HTMLParser):
    """Visible text in document order, and every src/href value."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.refs: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "title", "head"):
            self._hidden += 1
        self.refs.extend(v or "" for k, v in attrs if k in ("src", "href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "head"):
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.chunks.append(data.strip())


@pytest.fixture
def written(tmp_path: Path) -> dict[str, Path]:
    return write_reports(sample_result(), tmp_path / "reports")


def test_json_round_trips_with_the_verdict_first(written: dict[str, Path]) -> None:
    assert set(written) == {"json", "html"}
    text = written["json"].read_text(encoding="utf-8")
    data = json.loads(text)
    assert data == json.loads(json.dumps(sample_result()))
    assert next(iter(data)) == "verdict" and data["verdict"] == "FAIL"
    assert RTL_EMOJI in text  # ensure_ascii=False: readable in a diff or a CI log
    for req in data["requirements"]:
        assert {"id", "level", "verdict", "tests", "evidence"} <= set(req)


def test_html_leads_with_the_overall_verdict(written: dict[str, Path]) -> None:
    html = written["html"].read_text(encoding="utf-8")
    first_heading = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    assert first_heading and "FAIL" in first_heading.group(1)
    assert html.index("<h1") < html.index("<h2")
    parser = _TextCollector()
    parser.feed(html)
    text = " ".join(parser.chunks)
    assert "Compliance: FAIL" in parser.chunks[0] or "Compliance: FAIL" in " ".join(parser.chunks[:2])
    assert text.index("Compliance: FAIL") < text.index("CONN-1")
    assert "How to read this report" in text


def test_hostile_payload_is_escaped_and_page_is_offline(written: dict[str, Path]) -> None:
    html = written["html"].read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert RTL_EMOJI in html
    parser = _TextCollector()
    parser.feed(html)
    assert not [r for r in parser.refs if re.match(r"\s*(https?:)?//", r)]
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html.lower() and "@import" not in html and "url(" not in html


def test_html_shows_details_for_non_passing_requirements(written: dict[str, Path]) -> None:
    html = written["html"].read_text(encoding="utf-8")
    assert re.search(r"<svg[^>]*class=\"histogram\"", html) and "<rect" in html
    assert html.count("<details open>") == 3  # FAIL, NON-STRICT, UNKNOWN
    assert "OUT OF BOUNDS" in html  # attempt 2: 3188 ms against a 3000 ms ceiling
    assert "+6.400 s" in html and "first event after recovery" in html
    assert "suites/test_delivery.py::test_latency" in html
    assert "3.10.8" in html and "latency_budget_ms" in html
    assert "target declares no REST API" in html


def test_summary_line_names_the_ids_behind_the_verdict() -> None:
    line = summary_line(sample_result())
    assert line.startswith("COMPLIANCE: FAIL")
    assert "MUST failed: DLV-2" in line and "unknown: RECON-1" in line and "non-strict: DLV-3" in line
    assert line.endswith("1 PASS, 1 FAIL, 1 NON-STRICT, 1 UNKNOWN, 1 N/A, 1 SKIPPED")
    passing = {"verdict": "PASS", "summary": {"PASS": 3}, "requirements": []}
    assert summary_line(passing) == "COMPLIANCE: PASS  3 PASS, 0 FAIL, 0 NON-STRICT, 0 UNKNOWN, 0 N/A, 0 SKIPPED"


def test_nearest_rank_percentiles_are_exact() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted on purpose
    s = latency_summary(values, 50)
    assert (s["count"], s["p50_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"], s["budget_ms"]) == (100, 50, 95, 99, 100, 50)
    small = latency_summary([10.0, 20.0, 30.0], 1000)
    assert (small["p50_ms"], small["p95_ms"], small["p99_ms"]) == (20.0, 30.0, 30.0)
    assert latency_summary([7.0], 1000)["p50_ms"] == 7.0
    empty = latency_summary([], 1000)
    assert empty["count"] == 0
    assert all(empty[k] is None for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "histogram"))


def test_histogram_buckets_are_upper_inclusive_with_overflow() -> None:
    h = histogram([0.5, 1.0, 1.01, 2000.0, 2000.1, 9999.0])
    assert h["bounds_ms"] == list(DEFAULT_BOUNDS)
    assert len(h["counts"]) == len(DEFAULT_BOUNDS) + 1
    assert h["counts"][0] == 2 and h["counts"][1] == 1 and h["counts"][-2] == 1 and h["counts"][-1] == 2
    assert sum(h["counts"]) == 6
    assert histogram([], [10, 20]) == {"bounds_ms": [10, 20], "counts": [0, 0, 0]}


def test_renders_with_optional_parts_missing(tmp_path: Path) -> None:
    minimal = {"verdict": "FAIL", "requirements": [{"id": "X-1", "verdict": "UNKNOWN"}]}
    html = render_html(minimal)
    assert "Compliance: FAIL" in html and "X-1" in html
    empty = {"verdict": "PASS", "summary": {}, "requirements": []}
    assert "No requirements were evaluated" in render_html(empty)
    stripped = copy.deepcopy(sample_result())
    for key in ("environment", "settings", "logs", "target", "areas", "summary"):
        stripped.pop(key)
    for req in stripped["requirements"]:
        for key in ("latency", "reconnects", "timeline", "failures", "tests", "evidence", "checklist"):
            req.pop(key, None)
    paths = write_reports(stripped, tmp_path / "nested" / "dir")
    assert paths["html"].exists() and json.loads(paths["json"].read_text(encoding="utf-8"))["verdict"] == "FAIL"
    assert summary_line(stripped).endswith("1 PASS, 1 FAIL, 1 NON-STRICT, 1 UNKNOWN, 1 N/A, 1 SKIPPED")


def test_summary_details_list_each_fail_and_unknown_with_its_reason() -> None:
    result = sample_result()
    result["requirements"][1]["reason"] = "Delivery over the latency budget: tab-3 waited 1500 ms (and 2 more)"
    assert summary_details(result) == [
        "  FAIL DLV-2: Delivery over the latency budget: tab-3 waited 1500 ms (and 2 more)",
        "  UNKNOWN RECON-1: the positive control received nothing after the restart",
    ]
    result["requirements"][1]["reason"] = "line one\nline two " + "y" * 300
    line = summary_details(result)[0]
    assert line.startswith("  FAIL DLV-2: line one line two yyy") and line.endswith("…") and len(line) == 202


def waived_result() -> dict:
    """sample_result with DLV-2 waived, a waiver unused and none expired: a passing run."""
    result = sample_result()
    result["verdict"] = "PASS"
    result["summary"] = {"PASS": 1, "FAIL": 0, "NON-STRICT": 1, "UNKNOWN": 0, "WAIVED": 2, "N/A": 1, "SKIPPED": 1}
    dlv2, recon1 = result["requirements"][1], result["requirements"][3]
    for req, was in ((dlv2, "FAIL"), (recon1, "UNKNOWN")):
        req["verdict"] = "WAIVED"
        req["reason"] = "tab-3 waited 1500 ms"
        req["waiver"] = {"id": req["id"], "reason": f"accepted until PLAT-7 {HOSTILE}", "expires": "2027-01-31",
                         "status": "applied", "verdict": was}
    result["waivers"] = {"file": "/repo/waivers.yaml", "entries": [
        {"id": "DLV-2", "reason": "accepted", "expires": "2027-01-31", "verdict": "FAIL", "status": "applied"},
        {"id": "RECON-1", "reason": "accepted", "expires": "2027-01-31", "verdict": "UNKNOWN", "status": "applied"},
        {"id": "CONN-1", "reason": "was slow", "expires": "2027-01-31", "verdict": "PASS", "status": "unused",
         "message": "waiver for CONN-1 is unused: the requirement passes; remove it from waivers.yaml"}]}
    result["catalogue_version"], result["catalogue_pinned"] = "1", True
    return result


def test_waived_requirements_in_line_details_and_html() -> None:
    result = waived_result()
    assert summary_line(result) == ("COMPLIANCE: PASS  (non-strict: DLV-3; waived: DLV-2, RECON-1) "
                                    "1 PASS, 0 FAIL, 1 NON-STRICT, 0 UNKNOWN, 2 WAIVED, 1 N/A, 1 SKIPPED")
    assert summary_details(result) == [
        f"  WAIVED DLV-2 (until 2027-01-31): accepted until PLAT-7 {HOSTILE}; was FAIL: tab-3 waited 1500 ms",
        f"  WAIVED RECON-1 (until 2027-01-31): accepted until PLAT-7 {HOSTILE}; was UNKNOWN: tab-3 waited 1500 ms",
        "  warning: waiver for CONN-1 is unused: the requirement passes; remove it from waivers.yaml",
    ]
    html = render_html(result)
    assert "<script" not in html.lower()
    assert "Waived until 2027-01-31:" in html and "(without the waiver: UNKNOWN)" in html
    assert "except 2 waived requirements (DLV-2, RECON-1)" in html
    assert html.count("≈ WAIVED") >= 3  # the legend, the count, each requirement
    assert "version 1 (pinned by the configuration)" in html
    assert 'id="waivers"' in html and "/repo/waivers.yaml" in html and "remove it from waivers.yaml" in html


def test_expired_waiver_fails_even_without_a_verdict_from_the_producer() -> None:
    result = waived_result()
    del result["verdict"]
    result["waivers"]["entries"][0]["status"] = "expired"
    result["waivers"]["entries"][0]["message"] = "waiver for DLV-2 expired on 2020-01-31; fix the defect or renew the waiver"
    assert summary_line(result).startswith("COMPLIANCE: FAIL  (waiver expired: DLV-2; ")
    assert "  EXPIRED waiver for DLV-2 expired on 2020-01-31; fix the defect or renew the waiver" in summary_details(result)


def test_the_report_states_the_gate_level_that_ran() -> None:
    result = {**copy.deepcopy(sample_result()),
              "gate": {"level": "release", "idle_window_s": 20.0, "examples": 40, "overridden": ["idle_window_s"]}}
    line = "gate level: release (idle window 20 s, 40 examples per generated check; set by hand: idle_window_s)"
    assert gate_line(result) == line
    assert "release (idle window 20 s, 40 examples per generated check; set by hand: idle_window_s)" in render_html(result)
    assert gate_line({"verdict": "PASS"}) == "gate level: not recorded"


@pytest.mark.parametrize("raw, clean", [
    ("\x1b[32minfo\x1b[39m consumer ready", "info consumer ready"),  # colour (SGR)
    ("\x1b[1;38;5;208mWARN\x1b[0m slow", "WARN slow"),  # 256-colour, bold
    ("\x1b[2K\x1b[1Gprogress 10%", "progress 10%"),  # erase line, cursor move
    ("\x1b]0;gateway\x07started", "started"),  # window title (OSC, BEL-ended)
    ("see \x1b]8;;https://x.example/\x1b\\the docs\x1b]8;;\x1b\\ now", "see the docs now"),  # a link (OSC 8, ST)
    ("\x1b(Bplain\x1b", "plain"),  # a charset switch, a lone ESC
    ("\x9b31mred\x9b0m", "red"),  # the 8-bit CSI
    ("tabs\tnew\nlines é 🚀 \\x1b as text", "tabs\tnew\nlines é 🚀 \\x1b as text"),  # nothing to strip
])
def test_terminal_codes_are_stripped(raw: str, clean: str) -> None:
    from realtime_conformance.harness.redaction import strip_terminal_codes

    assert strip_terminal_codes(raw) == clean


def test_a_coloured_gateway_log_reads_as_words_in_the_html(tmp_path: Path) -> None:
    result = sample_result()
    result["logs"] = {"gateway": "\x1b[31mERROR\x1b[0m consumer lost\n\x1b]0;title\x07"}
    html = render_html(result)
    assert "\x1b" not in html and "\x07" not in html and "[31m" not in html
    assert "ERROR consumer lost" in html


def test_ran_line_names_broker_gateway_and_redis() -> None:
    from realtime_conformance.harness.report.render import ran_line

    result = {"environment": {
        "broker": {"kind": "container", "url": "amqp://127.0.0.1:5999/", "image": "rabbitmq:3-management"},
        "gateway": {"kind": "process", "url": "http://127.0.0.1:4001", "command": "node src/index.js"},
        "redis": {"kind": "process", "url": "redis://127.0.0.1:6401/0", "server": "redis-server"},
        "replicas": 2}}
    assert ran_line(result) == ("ran: broker container amqp://127.0.0.1:5999/ (rabbitmq:3-management); "
                                "gateway process http://127.0.0.1:4001 and 1 more instance(s) (node src/index.js); "
                                "redis process redis://127.0.0.1:6401/0 (redis-server)")
    result["environment"]["redis"] = {"kind": "none", "note": "no Redis given to the gateway: it will use its own default"}
    assert ran_line(result).endswith("; redis none: no Redis given to the gateway: it will use its own default")
    assert ran_line({}) == "ran: no target was started (no selected test needed one)"
    assert "What ran" in render_html({**sample_result(), **result})


def test_screenshots_are_embedded_beside_their_requirement_and_left_out_of_the_json(tmp_path: Path) -> None:
    """compliance.html stays one offline file: images as data: URIs, only known types and plain base64
    (a saved result cannot smuggle markup in); compliance.json keeps caption and size, not the picture."""
    import base64

    from realtime_conformance.harness.judging.verdicts import MAX_SCREENSHOTS, _cap_screenshots

    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0 not really a jpeg").decode()
    shots = [{"caption": "tab 1 Live", "mime": "image/jpeg", "bytes": 20, "data": jpeg},
             {"caption": "hostile", "mime": "text/html", "bytes": 5, "data": "PHNjcmlwdD4="},
             {"caption": "broken", "mime": "image/png", "bytes": 5, "data": '"><script>alert(1)</script>'}]
    result = {"verdict": "PASS", "requirements": [{"id": "TAB-1", "verdict": "PASS", "screenshots": shots}]}
    paths = write_reports(result, tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    assert html.count("<img ") == 1 and f'src="data:image/jpeg;base64,{jpeg}"' in html and "tab 1 Live" in html
    assert "<script>alert(1)" not in html and "data:text/html" not in html
    saved = json.loads(paths["json"].read_text(encoding="utf-8"))["requirements"][0]["screenshots"]
    assert saved[0] == {"caption": "tab 1 Live", "mime": "image/jpeg", "bytes": 20}
    many = [{"id": f"R-{n}", "screenshots": [dict(shots[0]) for _ in range(10)]} for n in range(4)]
    _cap_screenshots(many)
    assert sum(len(r["screenshots"]) for r in many) == MAX_SCREENSHOTS
    assert many[2]["screenshots_dropped"] == 6 and many[3]["screenshots_dropped"] == 10
