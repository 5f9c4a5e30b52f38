"""The Node example gateway, and a copy broken on purpose, judged by the suites (as tests/test_broken_gateways.py).

Each variant runs the realtime suites in a subprocess from examples/node-gateway, with that
folder's pytest.ini (the user's config) and ``--requirements``: the one a variant breaks plus
sentinels it must not break. A variant is a preload (tests/broken/node/<variant>.js) that
patches one seam of the gateway. The unbroken gateway must PASS all of them; a broken one must
FAIL its requirement and nothing else that ran.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Iterator

import pytest

from realtime_conformance.harness.providers.broker import PrivateRabbitNode

from broken.runs import MarkedRuns, started, verdicts
from nodekit import ensure_node_modules

ROOT = Path(__file__).resolve().parents[1]
NODE_GATEWAY = ROOT / "examples" / "node-gateway"
PRELOADS = ROOT / "tests" / "broken" / "node"
SENTINELS = ("CONN-1", "AUTH-3", "AUTH-8", "DLV-5", "RECON-4", "ROB-1", "ROB-2", "ROB-3")
RUN_TIMEOUT_S = 300
RUNS = MarkedRuns("RTC_BROKEN_NODE_RUN")

# variant -> the requirements it must FAIL (none for the unbroken gateway)
VARIANTS: dict[str, tuple[str, ...]] = {
    "none": (),
    "resume_expired": ("AUTH-12",),
    # socket.io 4.6.1 behind a preload (issue 17): dies on a client event named `error` (CVE-2024-38355)
    "old_socketio": ("ROB-1",),
}
OLD_SOCKETIO = PRELOADS / "old-socketio"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="the Node example gateway needs `node` and `npm` on PATH (Node.js 20)",
)


def _command(variant: str, amqp_url: str, report_dir: Path) -> list[str]:
    preload = "" if variant == "none" else f"-r {PRELOADS / (variant + '.js')} "
    ids = ("AUTH-12", *SENTINELS)
    return [
        sys.executable, "-m", "realtime_conformance.harness.cli", "-q", "-p", "no:cacheprovider",
        "--gateway-cmd", f"node {preload}src/index.js",
        "--broker", "external", "--amqp-url", amqp_url,
        "--queue", f"rtc.broken-node.{variant}",
        "--requirements", ",".join(ids),
        f"--report-dir={report_dir}",
        "--hypothesis-profile", "ci", "--examples", "3",  # each defect shows in the first examples
        "--browser", "off",  # no variant here is about the browser checks
    ]


def _run(variant: str, amqp_url: str, report_dir: Path) -> dict:
    return RUNS.run(_command(variant, amqp_url, report_dir), cwd=NODE_GATEWAY, report_dir=report_dir,
                    timeout=RUN_TIMEOUT_S)


@pytest.fixture(scope="module")
def node_modules() -> None:
    """The gateway's dependencies, installed from its lock file if any is missing; and the old
    socket.io the old_socketio variant loads instead of the gateway's own."""
    ensure_node_modules()
    if not (OLD_SOCKETIO / "node_modules" / "socket.io" / "package.json").is_file():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=OLD_SOCKETIO, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"`npm ci` in {OLD_SOCKETIO} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def broker():
    with PrivateRabbitNode() as node:  # one node for the module's runs, each on a queue of its own
        yield node


@pytest.fixture(scope="module")
def runs(node_modules, broker, tmp_path_factory) -> Iterator[dict[str, Future]]:
    """Every variant's run, started at once, three at a time."""
    jobs = {name: functools.partial(_run, name, broker.amqp_url, tmp_path_factory.mktemp(f"node-{name}"))
            for name in VARIANTS}
    with started(jobs, workers=3) as futures:
        yield futures


def _verdicts(outcome: dict) -> dict[str, str]:
    return verdicts(outcome)


def test_the_node_gateway_passes(runs):
    outcome = runs["none"].result(timeout=RUN_TIMEOUT_S + 60)
    verdicts = _verdicts(outcome)
    assert verdicts == {rid: "PASS" for rid in ("AUTH-12", *SENTINELS)}, outcome["stdout"]
    assert outcome["returncode"] == 0


@pytest.mark.parametrize("variant", sorted(v for v, breaks in VARIANTS.items() if breaks))
def test_broken_node_gateway_is_caught_on_its_requirement_only(runs, variant):
    intended = VARIANTS[variant]
    outcome = runs[variant].result(timeout=RUN_TIMEOUT_S + 60)
    verdicts = _verdicts(outcome)
    missed = [rid for rid in intended if verdicts.get(rid) != "FAIL"]
    assert not missed, f"{variant} should FAIL {missed}; verdicts {verdicts}\n{outcome['stdout']}"
    unrelated = {rid: v for rid, v in verdicts.items() if rid not in intended and v != "PASS"}
    assert not unrelated, f"{variant} also changed unrelated requirements {unrelated}\n{outcome['stdout']}"
    assert outcome["returncode"] != 0
    assert outcome["result"]["verdict"] == "FAIL"


def test_no_process_of_the_node_runs_is_left(runs):
    """Every gateway the runs started is gone once they finish."""
    leftovers = RUNS.leftovers(runs, timeout=RUN_TIMEOUT_S + 60)
    assert not leftovers, f"processes left behind by the Node gateway runs: {leftovers}"
