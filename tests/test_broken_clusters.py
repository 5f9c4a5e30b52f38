"""Every cluster check can fail: the cluster area, run against reference gateways broken in one
way that only shows with several instances, catches each on its own requirement.

Each variant (tests/broken/variants.py, the ``cluster_*`` ones) runs as two instances
(``--gateway-replicas 2``) in a subprocess, with the whole cluster area (``-m cluster``). Its
requirement must be FAIL and every other cluster requirement as for the unbroken gateway:
PASS, and CLU-8 NON-STRICT (python-socketio has no connection state recovery, so the reference
gateway misses events when a client moves to another instance, as it does for RECON-4).
Runs four at a time against one shared private RabbitMQ node, each on its own queue; each
starts its own private Redis. About 2 minutes per variant here; select one with -k.
"""

from __future__ import annotations

import functools
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Iterator

import pytest

from realtime_conformance.harness.judging.catalogue import ACTIVE
from realtime_conformance.harness.providers.broker import PrivateRabbitNode

from broken.runs import MarkedRuns, selected_variants, started, verdicts

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "tests" / "broken" / "launch.py"
RUN_TIMEOUT_S = 420
RUNS = MarkedRuns("RTC_BROKEN_CLUSTER_RUN")
CLUSTER_IDS = tuple(r.id for r in ACTIVE if r.area == "CLU")
CONTROL = {**{rid: "PASS" for rid in CLUSTER_IDS}, "CLU-8": "NON-STRICT"}

EXPECTED: dict[str, str] = {
    "cluster_no_adapter": "CLU-1",
    "cluster_copy_per_instance": "CLU-2",
    "cluster_rooms_keyed_differently": "CLU-3",
    "cluster_adapter_drops_room": "CLU-4",
    "cluster_static_leader": "CLU-5",
    "cluster_local_read_model": "CLU-6",
    "cluster_competing_consumers": "CLU-7",
}


# Genuine dependencies, by name: what a defect makes impossible to judge elsewhere.
DEPENDS: dict[str, dict[str, str]] = {
    # A tab that moves to another instance can only be judged where that instance delivers at all.
    "cluster_no_adapter": {"CLU-8": "UNKNOWN"},
}


def _command(variant: str, amqp_url: str, report_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "suites", "-m", "cluster", "-q", "-p", "no:cacheprovider",
        "--gateway-cmd", f"{sys.executable} {LAUNCH} {variant}",
        "--gateway-replicas", "2",
        "--gateway-env", "GATEWAY_REPLICA={replica}",  # the variants that break one replica only
        "--queue", f"rtc.broken.cluster.{variant}",
        "--report-dir", str(report_dir),
        "--hypothesis-profile", "ci", "--examples", "3",  # each defect shows in the first examples
        "--broker", "external", "--amqp-url", amqp_url,
    ]


@pytest.fixture(scope="module")
def broker():
    with PrivateRabbitNode() as node:  # one node for the module's runs, each on a queue of its own
        yield node


def _run(variant: str, amqp_url: str, report_dir: Path) -> dict:
    return RUNS.run(_command(variant, amqp_url, report_dir), cwd=ROOT, report_dir=report_dir, timeout=RUN_TIMEOUT_S)


@pytest.fixture(scope="module")
def runs(broker, tmp_path_factory, request) -> Iterator[dict[str, Future]]:
    """Every selected variant's run, four at a time: each is two gateways, a Redis and the suite, but
    mostly waits (two runs took 84 s of wall and 36 s of CPU here)."""
    jobs = {name: functools.partial(_run, name, broker.amqp_url, tmp_path_factory.mktemp(name))
            for name in selected_variants(request)}
    with started(jobs, workers=4) as futures:
        yield futures


def _cluster_verdicts(outcome: dict) -> dict[str, str]:
    return {rid: v for rid, v in verdicts(outcome).items() if rid.startswith("CLU-")}


@pytest.mark.parametrize("variant", ["none"])
def test_the_unbroken_cluster_passes(runs, variant):
    outcome = runs[variant].result(timeout=RUN_TIMEOUT_S + 60)
    assert _cluster_verdicts(outcome) == CONTROL, outcome["stdout"]
    assert outcome["returncode"] == 0


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_broken_cluster_is_caught_on_its_requirement_only(runs, variant):
    outcome = runs[variant].result(timeout=RUN_TIMEOUT_S + 60)
    expected = {**CONTROL, **DEPENDS.get(variant, {}), EXPECTED[variant]: "FAIL"}
    assert _cluster_verdicts(outcome) == expected, outcome["stdout"]
    assert outcome["returncode"] != 0 and outcome["result"]["verdict"] == "FAIL"


def test_no_process_of_the_cluster_runs_is_left(runs):
    """Every gateway, Redis and broker the runs started is gone once they finish."""
    leftovers = RUNS.leftovers(runs, timeout=RUN_TIMEOUT_S + 60)
    assert not leftovers, f"processes left behind by the cluster runs: {leftovers}"


def test_every_cluster_requirement_has_a_broken_variant():
    """One variant per CLU MUST; CLU-8 (a SHOULD) the reference gateway itself fails, as RECON-4."""
    from broken.variants import VARIANTS

    assert sorted(v for v in VARIANTS if v.startswith("cluster_")) == sorted(EXPECTED)
    assert set(EXPECTED.values()) == set(CLUSTER_IDS) - {"CLU-8"}
