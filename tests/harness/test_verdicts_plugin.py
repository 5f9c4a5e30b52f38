"""Test outcomes become requirement verdicts, and the run's verdict, reports and exit code follow.

Inner runs (pytester, in-process) hold plain tests marked ``@pytest.mark.requirement``; none uses
the ``conformance`` fixture, so no broker or gateway is started.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from realtime_conformance.harness.judging import catalogue as _catalogue
pytest_plugins = ["pytester"]

ALL_IDS = [r.id for r in _catalogue.ACTIVE]
PASS_BODY = "pass"
FAIL_BODY = "assert 1 == 2, 'gateway said no'"

HEADER = """\
import pytest
from realtime_conformance.harness.judging.failures import ConformanceFailure, UnknownEvidence, Violation
"""


def _name(rid: str) -> str:
    return "test_" + rid.replace("-", "_")


def suite(**bodies: str | None) -> str:
    """A passing test for every catalogue ID; ``bodies`` (ID with '_' for '-') replaces or omits (None) some."""
    wanted = {k.replace("_", "-"): v for k, v in bodies.items()}
    assert set(wanted) <= set(ALL_IDS), set(wanted) - set(ALL_IDS)
    parts = [HEADER]
    for rid in ALL_IDS:
        body = wanted.get(rid, PASS_BODY)
        if body is None:
            continue
        parts.append(f"\n@pytest.mark.requirement({rid!r})\ndef {_name(rid)}():\n    {body}\n")
    return "".join(parts)


def run(pytester: pytest.Pytester, source: str, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    pytester.makepyfile(test_inner=source)
    result = pytester.runpytest("--report-dir=rep", "-rxs", *args)
    path = pytester.path / "rep" / "compliance.json"
    report = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return result, report


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in report["requirements"]}


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {e["id"]: e["verdict"] for e in report["requirements"]}


@pytest.fixture(autouse=True)
def _env(clean_env: pytest.MonkeyPatch) -> None:
    """Every inner run starts from a clean RTC_* environment."""


# --------------------------------------------------------------------------- one test per outcome

def test_one_test_per_outcome(pytester: pytest.Pytester) -> None:
    source = suite(
        DLV_2=FAIL_BODY,
        DLV_4="raise UnknownEvidence('positive control saw nothing')",
        REST_1="pytest.skip('N/A: target lacks rest')",
        AUTH_9=FAIL_BODY,
    )
    result, report = run(pytester, source)
    n = len(ALL_IDS)
    result.assert_outcomes(passed=n - 4, failed=2, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    v = verdicts(report)
    assert {k: v[k] for k in ("DLV-1", "DLV-2", "DLV-4", "REST-1", "AUTH-9")} == {
        "DLV-1": "PASS", "DLV-2": "FAIL", "DLV-4": "UNKNOWN", "REST-1": "N/A", "AUTH-9": "NON-STRICT"}
    assert report["verdict"] == "FAIL"
    assert report["summary"] == {"PASS": n - 4, "FAIL": 1, "NON-STRICT": 1, "UNKNOWN": 1, "WAIVED": 0, "N/A": 1,
                                 "SKIPPED": 0}
    entries = by_id(report)
    assert entries["DLV-2"]["reason"] == "gateway said no"
    assert entries["DLV-4"]["reason"] == "positive control saw nothing"
    assert entries["REST-1"]["reason"] == "N/A: target lacks rest"
    assert entries["AUTH-9"]["reason"] == "gateway said no"
    assert entries["AUTH-9"]["tests"][0]["outcome"] == "xfailed"
    assert entries["DLV-1"]["reason"] is None
    result.stdout.fnmatch_lines(["XFAIL test_inner.py::test_AUTH_9 - NON-STRICT: gateway said no"])


def test_report_json_and_html_shape(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, suite(DLV_2=FAIL_BODY))
    assert next(iter(report)) == "verdict"
    assert report["verdict"] == "FAIL"
    assert [e["id"] for e in report["requirements"]] == ALL_IDS
    for entry in report["requirements"]:
        assert {"id", "level", "verdict", "tests", "evidence"} <= set(entry), entry["id"]
        assert entry["level"] == _catalogue.BY_ID[entry["id"]].level
    dlv2 = by_id(report)["DLV-2"]
    assert [(t["nodeid"], t["outcome"], t["verdict"]) for t in dlv2["tests"]] == [
        ("test_inner.py::test_DLV_2", "failed", "FAIL")]
    html = (pytester.path / "rep" / "compliance.html").read_text(encoding="utf-8")
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    assert title.startswith("Compliance: FAIL")
    h1 = re.search(r"<h1>(.*?)</h1>", html, re.S)
    assert "Compliance: FAIL" in h1.group(1)
    assert h1.start() < html.index("DLV-2"), "the verdict comes before any requirement"
    lines = result.outlines
    at = next(i for i, l in enumerate(lines) if re.fullmatch(r"=+ realtime conformance =+", l))
    assert lines[at + 1].startswith("COMPLIANCE: FAIL")
    assert "DLV-2" in lines[at + 1]
    assert lines[at + 2] == "  FAIL DLV-2: gateway said no"
    assert lines[at + 3] == "gate level: pr (idle window 60 s, 8 examples per generated check)"
    assert lines[at + 4] == "ran: no target was started (no selected test needed one)"
    assert lines[at + 5] == f"json: {pytester.path / 'rep' / 'compliance.json'}"
    assert lines[at + 6] == f"html: {pytester.path / 'rep' / 'compliance.html'}"
    assert report["ran"] == lines[at + 4]


def test_all_pass_is_a_pass(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, suite())
    assert result.ret == pytest.ExitCode.OK
    assert report["verdict"] == "PASS"
    assert set(verdicts(report).values()) == {"PASS"}
    result.stdout.fnmatch_lines(["COMPLIANCE: PASS*"])


# --------------------------------------------------------------------------- SHOULD and strictness

def test_failing_should_is_non_strict_and_exit_0(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, suite(AUTH_9=FAIL_BODY))
    result.assert_outcomes(passed=len(ALL_IDS) - 1, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    assert report["verdict"] == "PASS"
    assert verdicts(report)["AUTH-9"] == "NON-STRICT"
    assert report["strict"] is False


@pytest.mark.parametrize("how", ["--conformance-strict", "--strict", "env"])
def test_failing_should_fails_when_strict(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                          how: str) -> None:
    args = []
    if how == "env":
        monkeypatch.setenv("RTC_CONFORMANCE_STRICT", "true")
    else:
        args.append(how)
    result, report = run(pytester, suite(AUTH_9=FAIL_BODY), *args)
    result.assert_outcomes(passed=len(ALL_IDS) - 1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert report["verdict"] == "FAIL"
    assert verdicts(report)["AUTH-9"] == "FAIL"
    assert report["strict"] is True
    result.stdout.fnmatch_lines(["COMPLIANCE: FAIL*[[]strict[]]"])


def test_untested_should_is_unknown_but_not_a_failed_run(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, suite(AUTH_9=None))
    assert verdicts(report)["AUTH-9"] == "UNKNOWN"
    assert report["verdict"] == "PASS"
    assert result.ret == pytest.ExitCode.OK


# --------------------------------------------------------------------------- missing evidence

def test_requirement_without_test_is_unknown_and_fails_the_run(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, suite(ISO_2=None))
    result.assert_outcomes(passed=len(ALL_IDS) - 1)
    entry = by_id(report)["ISO-2"]
    assert (entry["verdict"], entry["reason"], entry["tests"]) == ("UNKNOWN", "no test of this requirement ran", [])
    assert report["verdict"] == "FAIL"
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["COMPLIANCE: FAIL  (unknown: ISO-2) *"])


def test_crash_is_unknown_not_fail(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, suite(DLV_1="raise RuntimeError('harness fell over')"))
    entry = by_id(report)["DLV-1"]
    assert (entry["verdict"], entry["reason"]) == ("UNKNOWN", "harness fell over")
    assert report["verdict"] == "FAIL"


def test_setup_error_is_unknown_with_its_reason(pytester: pytest.Pytester) -> None:
    source = suite(DLV_1=None) + """
@pytest.fixture
def broken():
    raise RuntimeError("no broker")

@pytest.mark.requirement("DLV-1")
def test_DLV_1(broken):
    pass
"""
    result, report = run(pytester, source)
    result.assert_outcomes(passed=len(ALL_IDS) - 1, errors=1)
    entry = by_id(report)["DLV-1"]
    assert (entry["verdict"], entry["reason"]) == ("UNKNOWN", "setup failed: RuntimeError: no broker")


def test_worst_test_decides_and_violations_are_kept(pytester: pytest.Pytester) -> None:
    source = suite() + """
@pytest.mark.requirement("ISO-1")
def test_ISO_1_again():
    raise ConformanceFailure([Violation("ISO-1", "Event delivered to another tenant", "b got a's event",
                                        "high", {"client": "b"})])
"""
    result, report = run(pytester, source)
    entry = by_id(report)["ISO-1"]
    assert [t["verdict"] for t in entry["tests"]] == ["PASS", "FAIL"]
    assert entry["verdict"] == "FAIL"
    assert entry["failures"] == [{"requirement": "ISO-1", "title": "Event delivered to another tenant",
                                  "message": "b got a's event", "severity": "high", "example": {"client": "b"}}]
    assert entry["reason"] == "Event delivered to another tenant: b got a's event"


def test_na_by_skip_marker(pytester: pytest.Pytester) -> None:
    source = suite(REST_1=None) + """
@pytest.mark.skip(reason="N/A: the target declares --lacks rest")
@pytest.mark.requirement("REST-1")
def test_REST_1():
    pass
"""
    result, report = run(pytester, source)
    entry = by_id(report)["REST-1"]
    assert (entry["verdict"], entry["reason"]) == ("N/A", "N/A: the target declares --lacks rest")
    assert report["verdict"] == "PASS"


def test_plain_skip_is_skipped_not_na(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, suite(REST_1="pytest.skip('flaky on this box')"))
    entry = by_id(report)["REST-1"]
    assert (entry["verdict"], entry["reason"]) == ("SKIPPED", "flaky on this box")


# --------------------------------------------------------------------------- deselection

def test_deselected_by_requirements_option_is_skipped(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, suite(DLV_2=FAIL_BODY), "--requirements", "DLV-1,AUTH-9")
    result.assert_outcomes(passed=2, deselected=len(ALL_IDS) - 2)
    entries = by_id(report)
    assert entries["DLV-1"]["verdict"] == "PASS"
    assert (entries["DLV-2"]["verdict"], entries["DLV-2"]["reason"]) == ("SKIPPED", "not selected by --requirements")
    assert report["summary"]["SKIPPED"] == len(ALL_IDS) - 2
    assert report["verdict"] == "PASS"
    assert result.ret == pytest.ExitCode.OK


def test_deselected_by_k_is_skipped(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, suite(DLV_2=FAIL_BODY), "-k", "not DLV_2")
    entry = by_id(report)["DLV-2"]
    assert (entry["verdict"], entry["reason"]) == ("SKIPPED", "deselected (-m/-k/--requirements)")
    assert report["verdict"] == "PASS"
    assert result.ret == pytest.ExitCode.OK


def test_requirements_option_skips_ids_without_collected_tests(pytester: pytest.Pytester) -> None:
    # e.g. `pytest suites/test_dlv.py --requirements DLV-1`: the other files are not collected.
    result, report = run(pytester, HEADER + "\n@pytest.mark.requirement('DLV-1')\ndef test_DLV_1():\n    pass\n",
                         "--requirements", "DLV-1")
    v = verdicts(report)
    assert v["DLV-1"] == "PASS"
    assert {k for k, x in v.items() if x != "SKIPPED"} == {"DLV-1"}
    assert report["verdict"] == "PASS"
    assert result.ret == pytest.ExitCode.OK


# --------------------------------------------------------------------------- JUnit XML

def _junit_properties(path: Path) -> dict[str, list[tuple[str, str]]]:
    tree = ET.parse(path)
    return {case.get("name"): [(p.get("name"), p.get("value")) for p in case.iter("property")]
            for case in tree.iter("testcase")}


def test_junit_carries_requirement_property(pytester: pytest.Pytester) -> None:
    result, _ = run(pytester, suite(DLV_2=FAIL_BODY), "--junitxml=junit.xml")
    props = _junit_properties(pytester.path / "junit.xml")
    assert set(props) == {_name(r) for r in ALL_IDS}
    for rid in ALL_IDS:
        assert ("requirement", rid) in props[_name(rid)], rid


def test_junit_carries_verdict_property(pytester: pytest.Pytester) -> None:
    result, _ = run(pytester, suite(DLV_2=FAIL_BODY, AUTH_9=FAIL_BODY), "--junitxml=junit.xml")
    props = _junit_properties(pytester.path / "junit.xml")
    assert ("verdict", "FAIL") in props["test_DLV_2"]
    assert ("verdict", "NON-STRICT") in props["test_AUTH_9"]
    assert ("verdict", "PASS") in props["test_DLV_1"]


# --------------------------------------------------------------------------- usage and edge cases

def test_unknown_requirement_in_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=HEADER + "\n@pytest.mark.requirement('DLV-99')\ndef test_a():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    known = ", ".join(r.id for r in _catalogue.ACTIVE if r.area == "DLV")
    assert [l for l in result.errlines if l.startswith("ERROR:")] == [
        f"ERROR: test_inner.py::test_a: unknown requirement 'DLV-99'; known here: {known}"]


def test_unknown_area_in_marker_lists_the_areas(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=HEADER + "\n@pytest.mark.requirement('ZZZ-1')\ndef test_a():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [l for l in result.errlines if l.startswith("ERROR:")] == [
        f"ERROR: test_inner.py::test_a: unknown requirement 'ZZZ-1'; known here: {', '.join(sorted(_catalogue.AREAS))}"]


def test_no_requirement_marked_test_writes_no_report(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, "def test_plain():\n    pass\n")
    result.assert_outcomes(passed=1)
    assert report == {}
    assert not (pytester.path / "rep").exists()
    assert not any("realtime conformance" in l for l in result.outlines)
    assert not any(l.startswith("COMPLIANCE:") for l in result.outlines)


FAKE_TARGET = """
import types
import pytest

@pytest.fixture(scope="session")
def conformance_target(conformance_settings):
    # Stands in for the broker and gateway: only what Conformance reads at construction.
    return types.SimpleNamespace(settings=conformance_settings)
"""


def test_conformance_fixture_without_marker_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_TARGET)
    pytester.makepyfile(test_inner="def test_unmarked(conformance):\n    pass\n")
    result = pytester.runpytest()
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "*UsageError: test_inner.py::test_unmarked uses `conformance` but has no @pytest.mark.requirement(...)"])


def test_latencies_are_reported_against_the_configured_budget(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(FAKE_TARGET)
    source = suite(DLV_2=None) + """
from realtime_conformance.harness.judging.checks import CheckResult

@pytest.mark.requirement("DLV-2")
def test_DLV_2(conformance):
    result = CheckResult()
    result.latencies_ms["new_message"] += [5.0, 7.0, 300.0]
    conformance.record_latencies(result)
"""
    result, report = run(pytester, source, "--latency-budget-ms=250")
    result.assert_outcomes(passed=len(ALL_IDS))
    entry = by_id(report)["DLV-2"]
    latency = entry["latency"]["new_message"]
    assert (entry["verdict"], latency["budget_ms"], latency["count"], latency["max_ms"]) == ("PASS", 250.0, 3, 300.0)
    assert "latency_budget_ms" not in entry["evidence"]  # the budget travels with the latencies, not as noise


def test_bare_assertion_error_is_a_fail(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, suite(DLV_1="raise AssertionError"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=len(ALL_IDS) - 1, failed=1)
    assert verdicts(report)["DLV-1"] == "FAIL"


def test_collect_only_writes_no_report(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, suite(), "--collect-only")
    assert result.ret == pytest.ExitCode.OK
    assert report == {}


def test_pytest_fail_is_a_fail(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, suite(DLV_1="pytest.fail('gateway accepted a forged token')",
                                         AUTH_9="pytest.fail('token in query accepted')"))
    v = verdicts(report)
    assert (v["DLV-1"], v["AUTH-9"]) == ("FAIL", "NON-STRICT")


# --------------------------------------------------------------------------- reasons and the terminal

def test_reason_names_the_first_violation_and_counts_the_rest(pytester: pytest.Pytester) -> None:
    source = suite(ISO_1=None) + """
@pytest.mark.requirement("ISO-1")
def test_ISO_1():
    raise ConformanceFailure([
        Violation("ISO-1", "Event delivered to another tenant",
                  "client t-1/tab1 of tenant 't-1' received event #3 of tenant 't-2'"),
        Violation("ISO-1", "Event delivered to another tenant", "client t-1/tab2 received event #4"),
        Violation("ISO-1", "Event delivered to another tenant", "client t-3/tab1 received event #5"),
    ])
"""
    result, report = run(pytester, source)
    headline = ("Event delivered to another tenant: client t-1/tab1 of tenant 't-1' received event #3 "
                "of tenant 't-2' (and 2 more)")
    entry = by_id(report)["ISO-1"]
    assert entry["reason"] == headline
    assert entry["tests"][0]["message"] == headline
    assert len(entry["failures"]) == 3
    lines = result.outlines
    at = next(i for i, l in enumerate(lines) if l.startswith("COMPLIANCE: FAIL"))
    assert lines[at + 1] == f"  FAIL ISO-1: {headline}"
    # The terminal's failure is that one line; the three violations are in the report.
    result.stdout.fnmatch_lines([f"FAIL ISO-1: {headline} (evidence: compliance.html)"])


def test_conformance_failure_and_unknown_are_one_line_without_a_traceback(pytester: pytest.Pytester) -> None:
    source = suite(ISO_1=None, DLV_4=None, DLV_2=None) + """
def _deep():
    raise ConformanceFailure([Violation("ISO-1", "Event delivered to another tenant", "b got a's event",
                                        example={"tenant": "t-1"})])

@pytest.mark.requirement("ISO-1")
def test_ISO_1():
    _deep()

@pytest.mark.requirement("DLV-4")
def test_DLV_4():
    raise UnknownEvidence("the positive control saw nothing\\nsecond line")

@pytest.mark.requirement("DLV-2")
def test_DLV_2_harness_error():
    {}["missing"]
"""
    result, report = run(pytester, source, "--junitxml=junit.xml", "-rf")
    out = result.stdout.str()
    fail = "FAIL ISO-1: Event delivered to another tenant: b got a's event (evidence: compliance.html)"
    unknown = "UNKNOWN DLV-4: the positive control saw nothing second line (evidence: compliance.html)"
    result.stdout.fnmatch_lines([f"_* test_ISO_1 _*", fail, "_* test_DLV_4 _*", unknown])
    assert "def _deep" not in out and "raise ConformanceFailure" not in out and "E   " not in out.split(
        "test_DLV_2_harness_error")[0]
    result.stdout.fnmatch_lines(["FAILED test_inner.py::test_ISO_1 - FAIL ISO-1: Event delivered*"])  # the summary too
    # A harness error is not a verdict the harness reached: its traceback stays.
    result.stdout.fnmatch_lines(["E       KeyError: 'missing'"])
    # The evidence is intact in the report, and JUnit XML carries the one line as the message.
    assert by_id(report)["ISO-1"]["failures"][0]["example"] == {"tenant": "t-1"}
    failure = ET.parse(pytester.path / "junit.xml").find(".//testcase[@name='test_ISO_1']/failure")
    assert failure is not None and failure.get("message") == fail


def test_terminal_lists_each_fail_and_unknown_with_its_reason(pytester: pytest.Pytester) -> None:
    long_reason = "x" * 400
    result, report = run(pytester, suite(DLV_2=FAIL_BODY, DLV_4=f"raise UnknownEvidence({long_reason!r})",
                                         ISO_2=None, AUTH_9=FAIL_BODY))
    lines = result.outlines
    at = next(i for i, l in enumerate(lines) if l.startswith("COMPLIANCE: FAIL"))
    detail = lines[at + 1: at + 4]
    assert detail[0] == "  FAIL DLV-2: gateway said no"
    assert detail[1].startswith("  UNKNOWN DLV-4: xxx") and detail[1].endswith("…")
    assert len(detail[1]) == 2 + 200
    assert detail[2] == "  UNKNOWN ISO-2: no test of this requirement ran"
    assert lines[at + 4].startswith("gate level: ")  # NON-STRICT AUTH-9 is in the summary line, not listed


# --------------------------------------------------------------------------- waivers

WAIVE_DLV_2 = "waivers:\n  - id: DLV-2\n    reason: p99 over budget until PLAT-1 ships\n    expires: {expires}\n"


def test_waived_failure_is_waived_and_the_run_passes(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", waivers=WAIVE_DLV_2.format(expires="2999-01-31"))
    result, report = run(pytester, suite(DLV_2=FAIL_BODY), "--waivers=waivers.yaml", "--junitxml=junit.xml")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=len(ALL_IDS) - 1, xfailed=1)
    assert report["verdict"] == "PASS"
    assert report["summary"]["WAIVED"] == 1 and report["summary"]["FAIL"] == 0
    entry = by_id(report)["DLV-2"]
    assert entry["verdict"] == "WAIVED"
    assert entry["reason"] == "gateway said no"
    assert entry["waiver"] == {"id": "DLV-2", "reason": "p99 over budget until PLAT-1 ships", "expires": "2999-01-31",
                               "status": "applied", "verdict": "FAIL"}
    assert entry["tests"][0]["verdict"] == "FAIL"  # the test's own verdict stays the truth
    assert report["waivers"] == {"file": str(pytester.path / "waivers.yaml"), "entries": [
        {"id": "DLV-2", "reason": "p99 over budget until PLAT-1 ships", "expires": "2999-01-31", "verdict": "FAIL",
         "status": "applied"}]}
    result.stdout.fnmatch_lines([
        f"COMPLIANCE: PASS  (waived: DLV-2) {len(ALL_IDS) - 1} PASS, 0 FAIL, 0 NON-STRICT, 0 UNKNOWN, 1 WAIVED, "
        "0 N/A, 0 SKIPPED",
        "  WAIVED DLV-2 (until 2999-01-31): p99 over budget until PLAT-1 ships; was FAIL: gateway said no",
        "XFAIL test_inner.py::test_DLV_2 - WAIVED: DLV-2 until 2999-01-31: p99 over budget until PLAT-1 ships "
        "(was FAIL: gateway said no)",
    ])
    props = _junit_properties(pytester.path / "junit.xml")["test_DLV_2"]
    assert ("verdict", "WAIVED") in props
    assert ("waiver", "FAIL waived: DLV-2 until 2999-01-31: p99 over budget until PLAT-1 ships") in props
    html = (pytester.path / "rep" / "compliance.html").read_text(encoding="utf-8")
    assert "Waived until 2999-01-31:" in html and "≈ WAIVED" in html and 'id="waivers"' in html


def test_expired_waiver_fails_the_run_and_says_so(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", waivers=WAIVE_DLV_2.format(expires="2020-01-31"))
    result, report = run(pytester, suite(DLV_2=FAIL_BODY), "--waivers=waivers.yaml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=len(ALL_IDS) - 1, failed=1)
    assert report["verdict"] == "FAIL"
    entry = by_id(report)["DLV-2"]
    assert entry["verdict"] == "FAIL"
    assert entry["waiver"]["status"] == "expired"
    message = "waiver for DLV-2 expired on 2020-01-31; fix the defect or renew the waiver"
    assert report["waivers"]["entries"][0]["message"] == message
    result.stdout.fnmatch_lines([
        "realtime-conformance: 1 waiver(s) from */waivers.yaml; expired: DLV-2",
        "COMPLIANCE: FAIL  (MUST failed: DLV-2; waiver expired: DLV-2) *",
        "  FAIL DLV-2: gateway said no",
        f"  EXPIRED {message}",
    ])
    html = (pytester.path / "rep" / "compliance.html").read_text(encoding="utf-8")
    assert "Waiver expired on 2020-01-31:" in html and "1 waiver expired (DLV-2)" in html


def test_expired_waiver_of_a_should_fails_the_run(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", waivers="waivers:\n  - {id: AUTH-9, reason: later, expires: 2020-01-31}\n")
    result, report = run(pytester, suite(AUTH_9=FAIL_BODY), "--waivers=waivers.yaml")
    assert verdicts(report)["AUTH-9"] == "NON-STRICT"
    assert report["verdict"] == "FAIL"
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_waiver_covers_unknown_and_non_strict(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", waivers="waivers:\n  - {id: AUTH-9, reason: later, expires: 2999-01-31}\n"
                                       "  - {id: ISO-2, reason: not built yet, expires: 2999-01-31}\n"
                                       "  - {id: DLV-4, reason: flaky control, expires: 2999-01-31}\n")
    result, report = run(pytester, suite(AUTH_9=FAIL_BODY, ISO_2=None,
                                         DLV_4="raise UnknownEvidence('control saw nothing')"),
                         "--waivers=waivers.yaml")
    v = verdicts(report)
    assert (v["AUTH-9"], v["ISO-2"], v["DLV-4"]) == ("WAIVED", "WAIVED", "WAIVED")
    assert [e["waiver"]["verdict"] for e in map(by_id(report).get, ("AUTH-9", "ISO-2", "DLV-4"))] == [
        "NON-STRICT", "UNKNOWN", "UNKNOWN"]
    assert report["verdict"] == "PASS"
    assert result.ret == pytest.ExitCode.OK


def test_unused_waiver_is_a_warning_not_a_failure(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", waivers="waivers:\n  - {id: DLV-1, reason: was broken, expires: 2999-01-31}\n"
                                       "  - {id: DLV-5, reason: was broken, expires: 2020-01-31}\n"
                                       "  - {id: REST-1, reason: no REST yet, expires: 2999-01-31}\n")
    result, report = run(pytester, suite(REST_1="pytest.skip('N/A: target lacks rest')"), "--waivers=waivers.yaml")
    assert result.ret == pytest.ExitCode.OK
    assert report["verdict"] == "PASS"
    assert [(w["id"], w["status"]) for w in report["waivers"]["entries"]] == [
        ("DLV-1", "unused"), ("DLV-5", "unused"), ("REST-1", "not checked")]
    result.stdout.fnmatch_lines([
        "  warning: waiver for DLV-1 is unused: the requirement passes; remove it from waivers.yaml",
        "  warning: waiver for DLV-5 is unused: the requirement passes; remove it from waivers.yaml "
        "(it expired on 2020-01-31)",
    ])
    assert verdicts(report)["REST-1"] == "N/A"


def test_a_test_of_two_requirements_is_waived_only_if_both_are(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", waivers="waivers:\n  - {id: DLV-4, reason: dupes, expires: 2999-01-31}\n")
    source = suite(DLV_4=None, DLV_5=None) + f"""
@pytest.mark.requirement("DLV-4", "DLV-5")
def test_order_and_dupes():
    {FAIL_BODY}
"""
    result, report = run(pytester, source, "--waivers=waivers.yaml")
    v = verdicts(report)
    assert (v["DLV-4"], v["DLV-5"]) == ("WAIVED", "FAIL")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=len(ALL_IDS) - 2, failed=1)


def test_terminal_codes_are_stripped_from_what_junit_stores(pytester: pytest.Pytester) -> None:
    body = "print('\\x1b[31mERROR\\x1b[0m gateway log'); raise AssertionError('\\x1b[1mbold\\x1b[0m no')"
    result, _ = run(pytester, suite(DLV_2=body), "--junitxml=junit.xml", "-o", "junit_logging=all")
    xml = (pytester.path / "junit.xml").read_text(encoding="utf-8")
    assert "ERROR gateway log" in xml and "AssertionError: bold no" in xml  # captured output, failure text
    assert "\x1b" not in xml and "&#27;" not in xml and "#x1B" not in xml.upper()
