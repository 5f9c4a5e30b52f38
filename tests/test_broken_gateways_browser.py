"""Broken gateways the browser checks are about (issue 19): one defect, one verdict, with the browser as witness.

tests/test_broken_gateways.py deselects the browser checks (``-m 'realtime and not browser'``).
Here a variant that only a browser can see is run with ``--browser required``: it must FAIL its
requirement and nothing else that ran, and the browser's own refusal must be among the evidence,
in compliance.json and in compliance.html.

Opt-in, as a run needs Chromium, Playwright and socket.io-client (scripts/install-browser.sh):
``RTC_BROWSER_VARIANTS=1``. About 30 s.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from realtime_conformance.harness.providers.broker import PrivateRabbitNode
from tests.broken.runs import MarkedRuns, verdicts

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "tests" / "broken" / "launch.py"
RUNS = MarkedRuns("RTC_BROWSER_VARIANTS_RUN")
RUN_TIMEOUT_S = 300
# ORIG-3 and the requirements whose checks go near REST from the page or the origin policy
JUDGED = ("ORIG-3", "REST-1", "ORIG-1", "ORIG-2", "REST-2", "CONN-1")
BROWSER_CHECK = "test_browser_rest_cors_from_allowed_and_forbidden_origin"

pytestmark = pytest.mark.skipif(not os.environ.get("RTC_BROWSER_VARIANTS"),
                                reason="opt-in: RTC_BROWSER_VARIANTS=1 (needs scripts/install-browser.sh)")


@pytest.fixture(scope="module")
def broker():
    """A RabbitMQ node of the test's own, used as an external one (a harness-started broker also gets a
    pool of vhosts made with rabbitmqctl, which the run then waits for)."""
    with PrivateRabbitNode() as node:
        yield node


def test_preflight_without_authorization_fails_orig3_only_with_the_browsers_refusal(broker, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pytest", "suites", "-m", "realtime", "-q", "-p", "no:cacheprovider",
               "--gateway-cmd", f"{sys.executable} {LAUNCH} preflight_without_authorization",
               "--requirements", ",".join(JUDGED), "--browser", "required",
               "--broker", "external", "--amqp-url", broker.amqp_url, "--queue", "rtc.browser.preflight",
               "--report-dir", str(tmp_path), "--hypothesis-profile", "ci", "--examples", "3"]
    outcome = RUNS.run(command, cwd=ROOT, report_dir=tmp_path, timeout=RUN_TIMEOUT_S)
    seen = verdicts(outcome)
    assert seen["ORIG-3"] == "FAIL", (seen, outcome["stdout"])
    assert {rid: v for rid, v in seen.items() if v == "FAIL" and rid != "ORIG-3"} == {}, seen
    assert all(v in ("PASS", "UNKNOWN") for rid, v in seen.items() if rid != "ORIG-3"), seen
    # REST-1's browser check is refused by the same CORS answer: UNKNOWN, blocked by ORIG-3, never a second FAIL
    assert seen["REST-1"] in ("PASS", "UNKNOWN"), seen

    orig3 = next(e for e in outcome["result"]["requirements"] if e["id"] == "ORIG-3")
    by_test = {t["nodeid"].rsplit("::", 1)[-1]: t for t in orig3["tests"]}
    assert by_test[BROWSER_CHECK]["verdict"] == "FAIL", by_test
    assert "the browser refused the CORS answer" in by_test[BROWSER_CHECK]["message"], by_test[BROWSER_CHECK]
    allowed = orig3["evidence"]["allowed_origin"]
    assert allowed["status"] == 0 and allowed["error"], allowed  # the page read no answer: the browser refused it
    console = json.dumps(orig3["evidence"].get("browser console and frames"))
    assert "blocked by CORS policy" in console and "authorization" in console.lower(), console[:2000]

    html = (tmp_path / "compliance.html").read_text(encoding="utf-8")
    assert "REST refused to an allowed origin" in html and "Failed to fetch" in html
    assert "blocked by CORS policy" in html
    assert RUNS.leftovers({}, timeout=1) == []
