"""pytest plugin of the realtime conformance harness (entry point ``realtime_conformance``).

Thin on purpose: options and settings live in ``_settings``, the target in
``_target``, verdicts in ``_verdicts``, reports in ``_report``. This module
wires them to pytest's hooks and offers the fixtures suites use.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings as hypothesis_settings

from realtime_conformance.harness.judging import catalogue as _catalogue
from realtime_conformance.harness.report import render as _report
from realtime_conformance.harness import settings as _settings
from realtime_conformance.harness.bench import options as _bench_options
from realtime_conformance.harness.judging.conformance import NEEDS_REPLICAS, Conformance
from realtime_conformance.harness.judging.failures import ConformanceFailure, UnknownEvidence
from realtime_conformance.harness.providers.processes import reap_all
from realtime_conformance.harness.settings import Settings
from realtime_conformance.harness.providers.target import Target
from realtime_conformance.harness.wire import browser as _browser
from realtime_conformance.harness.wire.tokens import TokenFactory
from realtime_conformance.harness.judging.verdicts import NA_PREFIX, NON_STRICT_PREFIX, WAIVED_PREFIX, Run, verdict_for
from realtime_conformance.harness.judging.waivers import WAIVABLE
from realtime_conformance.harness.redaction import Redactor, strip_terminal_codes

SETTINGS_KEY = pytest.StashKey[Settings]()
RUN_KEY = pytest.StashKey[Run]()
TARGET_KEY = pytest.StashKey[Target]()
RESULT_KEY = pytest.StashKey[dict]()
SELECTED_KEY = pytest.StashKey[set]()  # requirement IDs of the tests this run will run
BENCH_KEY = pytest.StashKey[object]()  # the validated bench options, when the bench runs
PAGE_KEY = pytest.StashKey[_browser.PortalPage]()  # the browser checks' page server, when they run
BROWSER_SELECTED_KEY = pytest.StashKey[bool]()  # whether any browser check is selected

# Deterministic and bounded for CI; broader locally. Selected with --hypothesis-profile.
# CI does not shrink: every example costs a live round trip, and the failing example is
# reported as found. Locally, shrinking gives the minimal reproducer.
hypothesis_settings.register_profile(
    "ci", derandomize=True, max_examples=8, deadline=None, database=None, print_blob=True,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
hypothesis_settings.register_profile(
    "dev", max_examples=20, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def pytest_addoption(parser: pytest.Parser) -> None:
    _settings.add_options(parser)
    _bench_options.add_options(parser)


@pytest.hookimpl(trylast=True)  # after Hypothesis's plugin has loaded --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "realtime: an end-to-end conformance check against a live gateway")
    config.addinivalue_line("markers", "requirement(id): the catalogue requirement a test checks (CONFORMANCE.md)")
    config.addinivalue_line("markers", "background_evidence: the test collects evidence gathered while the other "
                            "tests ran (MET-3's idle window, ROB-6's silent clients); it runs last so the gathering overlaps them")
    config.addinivalue_line("markers", "cluster: a check that needs the gateway running as several instances "
                            "(--gateway-replicas 2 or more); SKIPPED otherwise")
    config.addinivalue_line("markers", "rob: robustness against broken and hostile clients (the ROB area): malformed "
                            "packets and requests sent to dedicated gateways; -m rob selects it alone")
    config.addinivalue_line("markers", "browser: a check made by the portal page in Chromium (a second witness under an "
                            "existing requirement); --browser decides whether it runs, -m 'not browser' deselects it")
    config.addinivalue_line("markers", "bench: the load bench (realtime-conformance bench); records numbers, never in -m realtime")
    config.stash[SETTINGS_KEY] = settings = _settings.resolve(config)
    if "bench" in (config.option.markexpr or ""):  # the bench's own options fail at start too, not mid-run
        config.stash[BENCH_KEY] = _bench_options.resolve(config)
    config.stash[RUN_KEY] = Run(strict=settings.strict, budget_ms=settings.latency_budget_ms,
                                 selected=settings.requirements, waivers=settings.waivers,
                                 catalogue_pinned=settings.catalogue_version is not None)
    _load_hypothesis_profile(config, settings)
    # SIGTERM (a CI runner cancelling) must unwind like Ctrl-C so children are reaped.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _sigterm)


def gate_of(settings: Settings) -> dict:
    """Which gate level ran, with the values it set: the report states it."""
    return {"level": settings.gate_level, "idle_window_s": settings.idle_window_s, "examples": settings.examples,
            "overridden": sorted(k for k in ("idle_window_s", "examples")
                                 if settings.sources.get(k, "default") != "default")}


def _load_hypothesis_profile(config: pytest.Config, settings: Settings) -> None:
    """The chosen Hypothesis profile (ci under CI, else dev) with the gate level's example count."""
    base = config.getoption("hypothesis_profile", None) or ("ci" if os.environ.get("CI") else "dev")
    name = f"{base}@{settings.examples}-examples"
    hypothesis_settings.register_profile(name, parent=hypothesis_settings.get_profile(base),
                                         max_examples=settings.examples)
    hypothesis_settings.load_profile(name)


def _sigterm(signum: int, frame: object) -> None:
    reap_all()
    raise KeyboardInterrupt("SIGTERM")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return _settings.header_lines(config.stash[SETTINGS_KEY])


def _requirements_of(item: pytest.Item) -> list[str]:
    ids: list[str] = []
    for mark in item.iter_markers("requirement"):
        ids.extend(str(a) for a in mark.args)
    return list(dict.fromkeys(ids))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash[SETTINGS_KEY]
    if not config.pluginmanager.hasplugin("asyncio") and any(i.get_closest_marker("realtime") for i in items):
        # Without it every async check would fail for a reason that is not the gateway's.
        raise pytest.UsageError("the realtime suites need the pytest-asyncio plugin, which this run disabled "
                                "(-p no:asyncio?): remove that, or deselect them with -m 'not realtime'")
    run = config.stash[RUN_KEY]
    keep, drop = [], []
    for item in items:
        ids = _requirements_of(item)
        for rid in ids:
            try:
                _catalogue.get(rid)
            except KeyError as exc:
                raise pytest.UsageError(f"{item.nodeid}: {exc.args[0]}") from None
        if ids and settings.requirements and not set(ids) & settings.requirements:
            drop.append(item)
            for rid in ids:
                run.deselected.setdefault(rid, "not selected by --requirements")
            continue
        keep.append(item)
        if item.get_closest_marker("cluster") and not settings.cluster:
            # Judged only where there are instances to compare: SKIPPED, and nothing is started for it.
            item.add_marker(pytest.mark.skip(reason=NEEDS_REPLICAS))
        if ids:
            run.record(item.nodeid, ids)
            for rid in ids:
                item.user_properties.append(("requirement", rid))
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    # Stable: evidence gathered in the background is collected after everything else has run.
    items.sort(key=lambda item: item.get_closest_marker("background_evidence") is not None)


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[SELECTED_KEY] = {rid for item in session.items for rid in _requirements_of(item)}
    browser_items = [item for item in session.items if item.get_closest_marker("browser")]
    session.config.stash[BROWSER_SELECTED_KEY] = bool(browser_items)
    if browser_items and not session.config.option.collectonly:
        # Now, before any fixture: where the browser cannot run, its checks are SKIPPED without a
        # broker or gateway being started for them (with --browser required they become UNKNOWN).
        page = session.config.stash[PAGE_KEY] = _browser.PortalPage.prepare(session.config.stash[SETTINGS_KEY])
        if page.problem and page.settings.browser != "required":
            for item in browser_items:
                item.add_marker(pytest.mark.skip(reason=f"browser check not run: {page.problem}"))


def pytest_deselected(items: list[pytest.Item]) -> None:
    # -m / -k deselection: the requirements of those tests are SKIPPED, not UNKNOWN.
    if not items:
        return
    run = items[0].config.stash[RUN_KEY]
    for item in items:
        for rid in _requirements_of(item):
            run.deselected.setdefault(rid, "deselected (-m/-k/--requirements)")


def _redact_report(report: pytest.TestReport, redactor: Redactor) -> None:
    """Secrets out of what pytest prints and JUnit XML stores: failure text, captured output, properties.

    Terminal control sequences go too: a gateway's coloured log quoted in a failure or captured
    output would otherwise land raw in the JUnit XML."""
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        path, lineno, reason = report.longrepr
        report.longrepr = (path, lineno, redactor.text(strip_terminal_codes(str(reason))))
    elif report.longrepr is not None:
        text = str(report.longrepr)
        clean = redactor.text(strip_terminal_codes(text))
        if clean != text:
            report.longrepr = clean  # loses the colours, only when there was something to hide
    report.sections = [(title, redactor.text(strip_terminal_codes(content))) for title, content in report.sections]
    report.user_properties = [(name, redactor.value(value, name)) for name, value in report.user_properties]
    if isinstance(getattr(report, "wasxfail", None), str):
        report.wasxfail = redactor.text(report.wasxfail)


@dataclass(frozen=True)
class _Crash:
    """Where a one-line failure was raised, in the shape pytest's summary and JUnit XML read."""

    path: str
    lineno: int
    message: str


class OneLineFailure:
    """A verdict the harness reached (FAIL or UNKNOWN) as one line instead of a traceback.

    The evidence (violations, examples) is in compliance.json/.html; a traceback through the
    harness's own frames only pushes the summary off the screen. ``toterminal`` and
    ``reprcrash`` are what pytest's terminal, its short summary and JUnit XML use."""

    def __init__(self, line: str, path: str, lineno: int) -> None:
        self.line = line
        self.reprcrash = _Crash(path, lineno, line)

    def toterminal(self, tw: Any) -> None:
        tw.line(self.line, red=True, bold=True)

    def __str__(self) -> str:
        return self.line


def _one_line(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """A ConformanceFailure or UnknownEvidence (and an intermittent violation) as one line."""
    run = item.config.stash[RUN_KEY]
    record = run.records.get(item.nodeid)
    if record is None or report.outcome != "failed" or call.excinfo is None or not record.verdict:
        return
    if not (isinstance(call.excinfo.value, (ConformanceFailure, UnknownEvidence))
            or record.verdict == "FAIL" and record.failures):  # an intermittent violation (see _judge)
        return
    path, lineno = str(item.path), 0
    with contextlib.suppress(Exception):
        lineno = (item.reportinfo()[1] or 0) + 1
    message = " ".join((record.message or type(call.excinfo.value).__name__).split())
    line = f"{record.verdict} {', '.join(record.requirements)}: {message} (evidence: compliance.html)"
    report.longrepr = OneLineFailure(item.config.stash[SETTINGS_KEY].redactor.text(strip_terminal_codes(line)),
                                     path, lineno)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    try:
        _judge(item, call, report)
        _one_line(item, call, report)
    finally:
        _redact_report(report, item.config.stash[SETTINGS_KEY].redactor)
    return report


def _judge(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """The test's verdict, message and violations onto its record; NON-STRICT and WAIVED become xfail."""
    run = item.config.stash[RUN_KEY]
    record = run.records.get(item.nodeid)
    if record is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        level = max((_catalogue.get(r).level for r in record.requirements), key=("SHOULD", "MUST").index)
        exc_type = call.excinfo.type if call.excinfo is not None else None
        # A violation that was seen is a FAIL even when the test ended otherwise: Hypothesis
        # replays a failing example, and an intermittent defect may not show again (Flaky).
        seen = [v for v in record.failures if v.requirement in record.requirements]
        intermittent = (report.outcome == "failed" and bool(seen) and exc_type is not None
                        and not issubclass(exc_type, ConformanceFailure))
        if intermittent:
            exc_type = ConformanceFailure
        skip_reason = None
        if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
            skip_reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        verdict = verdict_for(level, report.outcome, exc_type, skip_reason, run.strict)
        record.outcome = report.outcome
        record.verdict = verdict
        record.duration_s = report.duration
        if call.excinfo is not None and report.outcome == "failed":
            exc = call.excinfo.value
            if isinstance(exc, (ConformanceFailure, UnknownEvidence)):
                for v in exc.violations:
                    if v not in record.failures:
                        record.failures.append(v)
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            if isinstance(exc, UnknownEvidence):
                record.message = exc.reason[:500]
            elif isinstance(exc, ConformanceFailure):
                record.message = exc.headline[:500]
            else:
                record.message = first_line[:500]
                detail = str(exc).splitlines()[1:]
                if detail:  # e.g. a gateway's log tail when it did not start: the one clue to why
                    redactor = item.config.stash[SETTINGS_KEY].redactor
                    record.evidence.setdefault("error detail", redactor.text("\n".join(detail))[-4000:])
            if report.when == "setup" and not isinstance(exc, UnknownEvidence):
                record.message = f"setup failed: {type(exc).__name__}: {first_line}"[:500]
            if intermittent:
                record.message = (f"{seen[0].title}: {seen[0].message} (seen in one example; it did not "
                                  f"show again when replayed: an intermittent defect)")[:500]
        elif skip_reason:
            record.message = skip_reason
        waived = run.waived(record.requirements) if verdict in WAIVABLE else []
        shown = verdict
        if waived:
            # Accepted by the user's waiver file: shown, kept in the report, but not a failed run.
            terms = "; ".join(f"{w.id} until {w.expires.isoformat()}: {w.reason}" for w in waived)
            if report.outcome == "failed":
                report.outcome = "skipped"
                report.wasxfail = f"{WAIVED_PREFIX}{terms} (was {verdict}: {record.message or 'no message'})"
                record.outcome = "xfailed"
            shown = "WAIVED"
            item.user_properties.append(("waiver", f"{verdict} waived: {terms}"))
            report.user_properties.append(("waiver", f"{verdict} waived: {terms}"))
        elif verdict == "NON-STRICT":
            # A SHOULD that failed: shown, kept in the report, but not a failed run.
            report.outcome = "skipped"
            report.wasxfail = f"{NON_STRICT_PREFIX}{record.message or 'SHOULD requirement not met'}"
            record.outcome = "xfailed"
        # On the item, so the teardown report (the one JUnit XML reads properties from) has it too.
        item.user_properties.append(("verdict", shown))
        report.user_properties.append(("verdict", shown))


@pytest.fixture(scope="session")
def conformance_settings(pytestconfig: pytest.Config) -> Settings:
    """The validated harness settings."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def conformance_target(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> Iterator[Target]:
    """The broker and gateway under test, started once per run and always stopped."""
    settings = pytestconfig.stash[SETTINGS_KEY]
    if pytestconfig.stash.get(BROWSER_SELECTED_KEY, False):
        # Before the gateway starts: a harness-started gateway is told to allow the page's origin.
        settings = request.getfixturevalue("portal_page").settings
    target = Target(settings)
    pytestconfig.stash[TARGET_KEY] = target
    try:
        target.start()
        selected = pytestconfig.stash.get(SELECTED_KEY, set())
        if "FAULT-1" in selected:
            target.prepare_spare_broker()
        settings = target.settings
        if "MET-3" in selected and settings.has("rest") and settings.target_kind != "url":
            target.start_idle_watch(settings.idle_window_s)  # its window passes while the other checks run
        if "ROB-6" in selected and settings.target_kind != "url":
            target.start_silent_watch(settings.silent_close_s)  # its bound passes while the other checks run
        yield target
    finally:
        target.close()


@pytest.fixture(scope="session")
def portal_page(pytestconfig: pytest.Config) -> Iterator[_browser.PortalPage]:
    """The browser checks' page server (or why there is none), for the whole run."""
    page = pytestconfig.stash.get(PAGE_KEY, None)
    if page is None:
        page = pytestconfig.stash[PAGE_KEY] = _browser.PortalPage.prepare(pytestconfig.stash[SETTINGS_KEY])
    try:
        yield page
    finally:
        page.close()


@pytest.fixture
def portal_browser(portal_page: _browser.PortalPage, pytestconfig: pytest.Config) -> _browser.PortalPage:
    """The portal page and the Chromium that opens it (see harness.wire.browser): a check asks it
    for ``async with portal_browser.launch() as browser``. Where the browser checks cannot run
    it is SKIPPED (--browser auto or off, with the reason and the install command) or UNKNOWN
    (--browser required)."""
    if not pytestconfig.stash.get(BROWSER_SELECTED_KEY, False):
        # The page's origin must be allowed before the gateway starts, so the mark is needed.
        raise pytest.UsageError("a check that uses portal_browser needs @pytest.mark.browser, so the harness "
                                "serves the page (and a gateway it starts allows its origin) from the start")
    portal_page.require()  # UNKNOWN with --browser required (auto and off were SKIPPED at collection)
    return portal_page


@pytest.fixture
def conformance(conformance_target: Target, request: pytest.FixtureRequest) -> Conformance:
    """The per-test handle: scenarios, evidence, verdict helpers (see harness.judging.conformance)."""
    run = request.config.stash[RUN_KEY]
    ids = _requirements_of(request.node)
    if not ids:
        raise pytest.UsageError(f"{request.node.nodeid} uses `conformance` but has no @pytest.mark.requirement(...)")
    return Conformance(conformance_target, run.record(request.node.nodeid, ids))


@pytest.fixture(scope="session")
def tokens(conformance_settings: Settings) -> TokenFactory:
    """Signed tokens as the configured issuer makes them, and every broken kind."""
    return TokenFactory(conformance_settings.jwt_secret, conformance_settings.jwt_algorithm,
                        conformance_settings.tenant_claim, dict(conformance_settings.extra_claims))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    page = config.stash.get(PAGE_KEY, None)
    if page is not None:
        page.close()  # its checks may all have been skipped, so no fixture closed it
    run = config.stash.get(RUN_KEY, None)
    if run is None or not run.records or config.option.collectonly:
        return  # nothing was judged: keep the last real report
    settings = config.stash[SETTINGS_KEY]
    target = config.stash.get(TARGET_KEY, None)
    target_info = {"kind": settings.target_kind, "url": None, "command": None, "image": settings.gateway_image}
    environment: dict = {}
    logs = None
    if target is not None:
        environment = target.describe()
        target_info["url"] = target.main.url if target.main else settings.gateway_url
        logs = {name: strip_terminal_codes(text) for name, text in target.logs().items()}
    if settings.target_kind == "process":
        target_info["command"] = settings.command
    result = run.result(settings=settings.redacted(), target=target_info, environment=environment, logs=logs)
    result["gate"] = gate_of(settings)
    result["ran"] = _report.ran_line(result)  # what ran, in one line (kind, address, image or command)
    result = settings.redactor.value(result)  # the one boundary: JSON, HTML and the terminal read this
    report_dir = Path(settings.report_dir)
    if not report_dir.is_absolute():
        report_dir = Path(config.rootpath) / report_dir
    paths = _report.write_reports(result, report_dir)
    config.stash[RESULT_KEY] = {"result": result, "paths": paths}
    if result["verdict"] == "FAIL" and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    done = config.stash.get(RESULT_KEY, None)
    if not done:
        return
    terminalreporter.section("realtime conformance")
    terminalreporter.write_line(_report.summary_line(done["result"]))
    for line in _report.summary_details(done["result"]):
        terminalreporter.write_line(line)
    terminalreporter.write_line(_report.gate_line(done["result"]))
    terminalreporter.write_line(done["result"].get("ran") or _report.ran_line(done["result"]))
    for kind, path in done["paths"].items():
        terminalreporter.write_line(f"{kind}: {path}")


__all__ = ["Conformance", "NA_PREFIX"]
