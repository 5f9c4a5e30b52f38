"""The emulator proved against the real client (issue 19, item 5).

``PortalTab`` (and the ``RecoveringClient`` under it and under the wire checks' clients) imitates
socket.io-client 4 and the seed's SocketContext; the browser checks run the real client in
Chromium. For each gateway below (the reference, a named broken variant from tests/broken, or
the Node example gateway with a preload from tests/broken/node), one conformance run judges the
listed requirements with both witnesses (``--browser required``), and each row's verdicts must
be the expected ones: the same for both unless the row names a difference, which must be one of
the emulator's documented simplifications (harness/wire/portal.py) or what only a browser does.
Recovery (RECON-4, AUTH-12) has no browser check in the suites: its real-client side is
tests/emulator/browser_recovery.py, passed to these runs only. The browser's reconnect attempts
are also held to the emulator's backoff model (``ReconnectPolicy.bounds``).

Opt-in, as each case is a conformance run of 20 to 90 s: ``RTC_EMULATOR_VS_BROWSER=1`` runs the
quick case (the Node gateway's recovery, about 40 s, for CI), ``=all`` every case (about 7 minutes).
The table is written to reports/emulator-vs-browser.md.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from realtime_conformance.harness.providers.broker import PrivateRabbitNode
from realtime_conformance.harness.wire.portal import ReconnectPolicy
from tests.broken.runs import MarkedRuns

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "tests" / "broken" / "launch.py"
NODE_GATEWAY = ROOT / "examples" / "node-gateway"
PRELOADS = ROOT / "tests" / "broken" / "node"
PROBES = ROOT / "tests" / "emulator" / "browser_recovery.py"
TABLE = ROOT / "reports" / "emulator-vs-browser.md"
RUNS = MarkedRuns("RTC_EMULATOR_VS_BROWSER_RUN")
RUN_TIMEOUT_S = 600
RECONNECTS = "socket.io-client reconnects"  # the key the browser checks record the page's schedule under
SCHEDULE_SLACK_S = 0.4  # a failed attempt's own time (a refused TCP connect, a polling request) on a loaded machine


@dataclass(frozen=True)
class Row:
    """One requirement judged by both witnesses: the emulator's test and the verdicts expected."""

    requirement: str
    emulator_test: str
    emulator: str
    browser: str | None = None  # None: the same as the emulator's
    why_they_differ: str = ""  # required when the two differ

    @property
    def expected_browser(self) -> str:
        return self.browser or self.emulator


@dataclass(frozen=True)
class Case:
    gateway: str  # a variant of tests/broken/variants.py ("none": the reference), or node[:preload]
    rows: tuple[Row, ...]
    quick: bool = False

    @property
    def node(self) -> bool:
        return self.gateway.startswith("node")


TABS = "test_every_tab_gets_every_event_once"
EVERY = "test_every_event_reaches_every_client_of_its_tenant"
ISO = "test_no_event_reaches_another_tenant"
REFRESH = "test_manual_refresh_works_while_the_socket_is_down"
RESTART = "test_tabs_reconnect_after_a_gateway_restart"
CUT = "test_tabs_notice_a_network_cut_and_recover"
SHORT = "test_short_disconnect_misses_nothing"
RESUME = "test_expired_token_does_not_resume_its_session"

CASES = [
    # delivery to tabs, refresh and reconnect within policy, against the reference gateway
    Case("none", (Row("TAB-1", TABS, "PASS"), Row("DLV-1", EVERY, "PASS"), Row("REST-1", REFRESH, "PASS"),
                  Row("RECON-1", RESTART, "PASS"), Row("RECON-2", CUT, "PASS"))),
    Case("one_tab_per_token", (Row("TAB-1", TABS, "FAIL"),)),
    Case("alter_payload", (Row("DLV-1", EVERY, "FAIL"),)),
    Case("drop_event_type", (Row("DLV-1", EVERY, "FAIL"),)),
    Case("leak_across_tenants", (Row("ISO-1", ISO, "FAIL"),)),
    Case("slow_restart", (Row("RECON-1", RESTART, "FAIL"),)),
    Case("polling_refused", (Row(
        "RECON-1", RESTART, "PASS", "UNKNOWN",
        "the page starts on polling as socket.io-client does and never connects (CONN-2's finding, so UNKNOWN "
        "here); the emulator opens a websocket from the first packet (a documented simplification)"),)),
    Case("preflight_without_authorization", (Row(
        "REST-1", REFRESH, "PASS", "UNKNOWN",
        "only a browser preflights: the page's refresh is refused by CORS (ORIG-3's finding, so UNKNOWN here); "
        "the emulator's REST is not a browser's (a documented simplification)"),)),
    # recovery, against the Node example gateway and its resume_expired variant
    Case("node", (Row("RECON-4", SHORT, "PASS"), Row("AUTH-12", RESUME, "PASS")), quick=True),
    Case("node:resume_expired", (Row("AUTH-12", RESUME, "FAIL"),)),
]

MODE = os.environ.get("RTC_EMULATOR_VS_BROWSER", "")
pytestmark = pytest.mark.skipif(not MODE, reason="opt-in: RTC_EMULATOR_VS_BROWSER=1 (quick cases) or =all")
SELECTED = [c for c in CASES if MODE == "all" or c.quick]
_ROWS: list[str] = []
_SCHEDULES: list[str] = []


@pytest.fixture(scope="module")
def broker():
    """One RabbitMQ node for the module's runs, each on a queue of its own (a broker per run, and the
    rabbitmqctl calls a harness-started one gets, would add seconds to each)."""
    with PrivateRabbitNode() as node:
        yield node


def _command(case: Case, report_dir: Path, amqp_url: str) -> tuple[list[str], Path]:
    """The conformance run of one case, and the folder it runs from."""
    ids = ",".join(dict.fromkeys(r.requirement for r in case.rows))
    queue = "rtc.evb." + case.gateway.replace(":", ".")
    common = ["-m", "realtime", "-q", "-p", "no:cacheprovider", "--requirements", ids, "--browser", "required",
              "--report-dir", str(report_dir), "--hypothesis-profile", "ci", "--examples", "3",
              "--broker", "external", "--amqp-url", amqp_url, "--queue", queue]
    if case.node:
        preload = case.gateway.partition(":")[2]
        node = "node " + (f"-r {PRELOADS / (preload + '.js')} " if preload else "") + "src/index.js"
        return [sys.executable, "-m", "pytest", "-c", "pytest.ini", "--rootdir", ".", "--pyargs",
                "realtime_conformance.suites", str(PROBES), *common,
                "--gateway-cmd", node], NODE_GATEWAY
    command = [sys.executable, "-m", "pytest", "suites", str(PROBES), *common]
    if case.gateway != "none":
        command += ["--gateway-cmd", f"{sys.executable} {LAUNCH} {case.gateway}"]
    return command, ROOT


def _tests(outcome: dict, requirement: str) -> dict[str, dict]:
    """Each test of ``requirement`` that ran, by function name."""
    entry = next(e for e in (outcome["result"] or {}).get("requirements", []) if e["id"] == requirement)
    return {t["nodeid"].rsplit("::", 1)[-1].split("[", 1)[0]: t for t in entry["tests"] if t["outcome"] != "not run"}


def _real_schedule(outcome: dict, requirement: str) -> dict:
    """The page's disconnects and socket.io-client's reconnect attempts, as a browser check of ``requirement``
    recorded them (ms since the epoch); empty when none did."""
    entry = next(e for e in outcome["result"]["requirements"] if e["id"] == requirement)
    return (entry.get("evidence") or {}).get(RECONNECTS) or {}


def off_schedule(attempts: list[dict], disconnects: list[float], policy: ReconnectPolicy) -> list[str]:
    """Each gap between socket.io-client's reconnect attempts that the emulator's backoff model does not allow.

    Attempt n follows the disconnect (n = 1) or attempt n-1 after its backoff delay, plus the time
    the failed attempt itself took; the model says the delay lies in ``policy.bounds(n)``."""
    problems = []
    previous: float | None = None
    for a in sorted((a for a in attempts if a.get("n")), key=lambda a: a["at"]):
        n, at = int(a["n"]), a["at"] / 1000.0
        if n == 1:
            before = [d for d in disconnects if d <= at]
            previous = before[-1] if before else None
        if previous is not None:
            low, high = policy.bounds(n)
            gap = at - previous
            if not low - 0.05 <= gap <= high + SCHEDULE_SLACK_S:
                problems.append(f"attempt {n}: {gap:.3f} s after the previous, the model allows {low:g}..{high:g} s")
        previous = at
    return problems


@pytest.mark.parametrize("case", SELECTED, ids=[c.gateway for c in SELECTED])
def test_emulator_and_browser_agree(broker, tmp_path: Path, case: Case) -> None:
    command, cwd = _command(case, tmp_path, broker.amqp_url)
    outcome = RUNS.run(command, cwd=cwd, report_dir=tmp_path, timeout=RUN_TIMEOUT_S)
    assert outcome["result"] is not None, outcome["stdout"][-2000:] + outcome["stderr"][-2000:]
    wrong = []
    for row in case.rows:
        seen = _tests(outcome, row.requirement)
        emulator = seen.get(row.emulator_test, {}).get("verdict", "not run")
        browser = {name: t["verdict"] for name, t in seen.items() if name.startswith("test_browser_")}
        shown = ", ".join(f"{v}" for v in browser.values()) or "not run"
        agree = "yes" if set(browser.values()) == {emulator} else f"no: {row.why_they_differ or 'UNEXPLAINED'}"
        line = f"| {case.gateway} | {row.requirement} | {emulator} ({row.emulator_test}) | {shown} | {agree} |"
        _ROWS.append(line)
        if emulator != row.emulator or set(browser.values()) != {row.expected_browser}:
            wrong.append(f"{row.requirement}: emulator {emulator}, browser {browser}; expected {row.emulator}/"
                         f"{row.expected_browser}")
        real = _real_schedule(outcome, row.requirement)
        problems = off_schedule(real.get("attempts", []), [d["at"] / 1000.0 for d in real.get("disconnects", [])],
                                ReconnectPolicy())
        if problems:
            wrong.append(f"{row.requirement}: socket.io-client's backoff outside the emulator's model: {problems}")
        if real.get("attempts"):
            _SCHEDULES.append(f"{case.gateway} {row.requirement}: " + _schedule_line(real))
    _write_table()
    assert not wrong, f"{case.gateway}: {wrong}\n{outcome['stdout'][-3000:]}"
    assert RUNS.leftovers({}, timeout=1) == []


def _schedule_line(real: dict) -> str:
    """socket.io-client's attempts as seconds after the disconnect before them, for the table's notes."""
    out, last = [], None
    disconnects = sorted(d["at"] for d in real.get("disconnects", []))
    for a in sorted(real.get("attempts", []), key=lambda a: a["at"]):
        if a.get("n") == 1:
            before = [d for d in disconnects if d <= a["at"]]
            last = before[-1] if before else None
        label = "failed" if a.get("failed") else f"#{a['n']}"
        out.append(f"{label} +{(a['at'] - last) / 1000:.2f} s" if last is not None else label)
        last = a["at"]
    return ", ".join(out)


def _write_table() -> None:
    """The table of this session's cases so far (a fresh one per session), and socket.io-client's schedules."""
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    text = ("| gateway | requirement | emulator (its test) | browser (socket.io-client 4.8.4 in Chromium) | agree |\n"
            "|---|---|---|---|---|\n" + "".join(r + "\n" for r in _ROWS))
    if _SCHEDULES:
        text += ("\nsocket.io-client's reconnect attempts (seconds after the disconnect or the previous attempt), each "
                 "inside the emulator's backoff model:\n\n" + "".join(f"- {s}\n" for s in _SCHEDULES))
    TABLE.write_text(text, encoding="utf-8")
