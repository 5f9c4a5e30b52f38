"""Every check can fail: the suites, run against deliberately broken gateways, must catch each one.

For each variant (tests/broken/variants.py) the realtime suites run in a
subprocess against ``launch.py VARIANT``, restricted with ``--requirements`` to
the requirement the variant breaks plus sentinels that it must not break. The
test then reads compliance.json: the intended requirement must be FAIL, and no
other requirement that ran may be FAIL. Variants run five at a time against one
shared private RabbitMQ node, each on its own queue. A variant that tests/test_collateral.py
judges with the whole suite in the same session is left to that run (conftest.py deselects its
focused one): the whole-suite run asserts the same FAIL and no collateral anywhere.
"""

from __future__ import annotations

import functools
import sys
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from realtime_conformance.harness.providers.broker import PrivateRabbitNode

from broken.runs import MarkedRuns, selected_variants, started, verdicts

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "tests" / "broken" / "launch.py"
SENTINELS = ("CONN-1", "AUTH-3", "ISO-1", "DLV-5")
RUN_TIMEOUT_S = 300
RUNS = MarkedRuns("RTC_BROKEN_RUN")


@dataclass(frozen=True)
class Expect:
    catches: str
    strict: bool = False  # SHOULD requirements fail the run only in strict mode
    own_broker: bool = False  # needs a broker the harness can restart or count unacked messages on
    sentinels: tuple[str, ...] = SENTINELS
    also: tuple[str, ...] = ()  # further requirements the same defect breaks
    args: tuple[str, ...] = ()  # further options of the run (e.g. a capability the variant declares it lacks)

    @property
    def intended(self) -> tuple[str, ...]:
        return (self.catches, *self.also)


EXPECTED: dict[str, Expect] = {
    # issue: harness
    "leak_across_tenants": Expect("ISO-1"),
    "accept_expired": Expect("AUTH-3"),
    "accept_alg_none": Expect("AUTH-5"),
    "lookalike_origin": Expect("ORIG-2"),
    "origin_unanchored_suffix": Expect("ORIG-2"),
    "token_from_query": Expect("AUTH-9", strict=True),
    "drop_event_type": Expect("DLV-6"),
    "alter_payload": Expect("DLV-1"),
    "emit_twice": Expect("DLV-4"),
    "reverse_order": Expect("DLV-5", sentinels=("CONN-1", "AUTH-3", "ISO-1")),
    "delay_1500ms": Expect("DLV-2"),
    "status_without_conversation": Expect("STAT-3"),
    "stats_to_all_tenants": Expect("MET-5"),
    # issue: faults and the portal emulator
    "consumer_not_reregistered": Expect("FAULT-1", own_broker=True, also=("FAULT-6",)),
    "no_consume_after_failed_first_connect": Expect("FAULT-6", sentinels=("CONN-1", "AUTH-3", "RECON-3", "FAULT-3")),
    "ack_before_emit": Expect("FAULT-3", also=("FAULT-7",), strict=True),  # a SIGTERM loses the acked backlog too
    "poison_requeued_forever": Expect("FAULT-2"),
    "poison_kills_consumer": Expect("FAULT-2"),
    "stats_emit_every_read": Expect("MET-3"),
    "periodic_metrics": Expect("MET-3"),
    "slow_restart": Expect("RECON-1", also=("RECON-5",)),
    "expiry_not_enforced": Expect("AUTH-8", strict=True),
    "readmodel_lost_on_restart": Expect("REST-3"),
    "status_last_write_wins": Expect("STAT-2"),
    # one for each remaining requirement
    "websocket_refused": Expect("CONN-1", sentinels=("AUTH-3",)),
    "polling_refused": Expect("CONN-2", strict=True),
    "slow_handshake": Expect("CONN-3", sentinels=("CONN-1", "AUTH-3")),
    # Nothing is delivered to anyone, ever: late cannot be told from lost, so the events are over
    # the budget (DLV-2) and DLV-1, DLV-6 are UNKNOWN ("still arriving"), not FAIL.
    "room_from_subject": Expect("DLV-2"),
    "requires_unlisted_claim": Expect("AUTH-1"),
    "missing_token_accepted": Expect("AUTH-2"),
    "signature_not_checked": Expect("AUTH-4"),
    "default_tenant": Expect("AUTH-6"),
    "refused_subject_banned": Expect("AUTH-7"),
    "nbf_ignored": Expect("AUTH-10", strict=True),
    "refusal_without_code": Expect("AUTH-11", strict=True),
    "ends_refused_session_at_once": Expect("AUTH-11", strict=True, sentinels=(*SENTINELS, "AUTH-7", "AUTH-2")),
    "every_origin_refused": Expect("ORIG-1"),
    "delay_150ms": Expect("DLV-3", strict=True),
    "never_acks": Expect("DLV-7", own_broker=True, sentinels=("CONN-1", "AUTH-3")),
    "transient_queue": Expect("DLV-8"),
    "one_tab_per_token": Expect("TAB-1"),
    "closing_tab_evicts_siblings": Expect("TAB-2"),
    "honours_join": Expect("ISO-2"),
    "room_by_prefix": Expect("ISO-3"),
    "rest_ignores_tenant": Expect("ISO-4"),
    "drops_failed_status": Expect("STAT-1"),
    "drops_queue_metrics": Expect("MET-1", sentinels=("CONN-1", "AUTH-3")),
    "no_metrics_on_new_conversation": Expect("MET-4", strict=True),
    "rest_skips_signature": Expect("REST-2"),
    "purges_backlog_on_start": Expect("RECON-3"),
    "weak_secret_allowed": Expect("FAULT-5", strict=True),
    # issue 16
    "preflight_without_authorization": Expect("ORIG-3", sentinels=("ORIG-1", "ORIG-2", "REST-2", "CONN-1")),
    "preflight_any_origin": Expect("ORIG-3", sentinels=("ORIG-1", "ORIG-2", "REST-2", "CONN-1")),
    # no dead-letter queue declared, and malformed messages dropped without a word: FAULT-2 reads the log
    "drops_malformed_silently": Expect("FAULT-2", args=("--lacks", "dead-letter-queue")),
    # issue 17: robustness against broken and hostile clients
    "dies_on_reserved_event": Expect("ROB-1", sentinels=(*SENTINELS, "ROB-2", "ROB-3")),
    "dies_on_bad_attachment": Expect("ROB-1", sentinels=(*SENTINELS, "ROB-2", "ROB-3")),
    "http_dies_on_reset_upgrade": Expect("ROB-2", sentinels=(*SENTINELS, "ROB-1", "ROB-3")),
    "leaks_traceback_in_refusal": Expect("ROB-3", sentinels=(*SENTINELS, "ROB-1", "ROB-2")),
    # issue 18: hostile clients that starve the others or grow the process
    "buffers_oversize_message": Expect("ROB-4", sentinels=(*SENTINELS, "ROB-5", "ROB-7")),
    "keeps_state_after_close": Expect("ROB-5", sentinels=(*SENTINELS, "ROB-4", "ROB-7")),
    "blocks_on_client_events": Expect("ROB-7", sentinels=(*SENTINELS, "ROB-4", "ROB-5")),
    # issue 18: slow and silent clients, log flooding
    "logs_traceback_per_frame": Expect("ROB-8", sentinels=(*SENTINELS, "ROB-1")),
    # A short bound, and the reference's request deadline under it, so the run waits seconds, not a
    # minute, and only the Engine.IO sessions the variant keeps can fail it.
    "never_closes_silent_sessions": Expect("ROB-6", args=(
        "--silent-close-s", "8", "--gateway-env", "REQUEST_TIMEOUT=4", "--gateway-env", "CONNECT_TIMEOUT=4")),
    # issue 16: a graceful stop
    "sigterm_hangs_with_open_sockets": Expect("FAULT-7", strict=True),
    "acks_unemitted_on_shutdown": Expect("FAULT-7", strict=True),
}
# The reference gateway itself does not meet RECON-4 (python-socketio has no connection
# state recovery), so the control run shows that check failing too.
CONTROL = {**{rid: "PASS" for rid in SENTINELS}, "RECON-4": "NON-STRICT"}


def _command(variant: str, expect: Expect | None, amqp_url: str, report_dir: Path) -> list[str]:
    ids = tuple(CONTROL) if expect is None else (*expect.intended, *expect.sentinels)
    cmd = [
        sys.executable, "-m", "pytest", "suites", "-m", "realtime and not browser", "-q", "-p", "no:cacheprovider",
        "--gateway-cmd", f"{sys.executable} {LAUNCH} {variant}",
        "--queue", f"rtc.broken.{variant}",
        "--requirements", ",".join(ids),
        "--report-dir", str(report_dir),
        "--hypothesis-profile", "ci", "--examples", "3",  # each defect shows in the first examples
        "--idle-window-s", "8",
    ]
    if expect is not None and expect.own_broker:
        cmd += ["--broker", "process"]
    else:
        cmd += ["--broker", "external", "--amqp-url", amqp_url]
    if expect is not None and expect.strict:
        cmd.append("--conformance-strict")
    return cmd + list(expect.args if expect is not None else ())


def _run(variant: str, expect: Expect | None, amqp_url: str, report_dir: Path) -> dict:
    return RUNS.run(_command(variant, expect, amqp_url, report_dir), cwd=ROOT, report_dir=report_dir,
                    timeout=RUN_TIMEOUT_S)


@pytest.fixture(scope="module")
def broker():
    with PrivateRabbitNode() as node:  # one node for the module's runs, each on a queue of its own
        yield node


@pytest.fixture(scope="module")
def runs(broker, tmp_path_factory, request) -> Iterator[dict[str, Future]]:
    """Every selected variant's run, five at a time: they mostly wait (8 runs, four at a time, took
    83 s of wall and 56 s of CPU here), so two cores carry five."""
    # Runs with a broker of their own start a node first: they go first, so the pool does not end on them.
    names = sorted(selected_variants(request), key=lambda name: not (name in EXPECTED and EXPECTED[name].own_broker))
    jobs = {name: functools.partial(_run, name, EXPECTED.get(name), broker.amqp_url, tmp_path_factory.mktemp(name))
            for name in names}
    with started(jobs, workers=5) as futures:
        yield futures


def _verdicts(outcome: dict) -> dict[str, str]:
    return verdicts(outcome)


@pytest.mark.parametrize("variant", ["none"])
def test_the_unbroken_gateway_passes_the_sentinels(runs, variant):
    outcome = runs[variant].result(timeout=RUN_TIMEOUT_S + 60)
    verdicts = _verdicts(outcome)
    assert verdicts == CONTROL, outcome["stdout"]
    assert outcome["returncode"] == 0


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_broken_gateway_is_caught_on_its_requirement_only(runs, variant):
    expect = EXPECTED[variant]
    outcome = runs[variant].result(timeout=RUN_TIMEOUT_S + 60)
    verdicts = _verdicts(outcome)
    missed = [rid for rid in expect.intended if verdicts.get(rid) != "FAIL"]
    assert not missed, f"{variant} should FAIL {missed}; verdicts {verdicts}\n{outcome['stdout']}"
    unrelated = {rid: v for rid, v in verdicts.items() if rid not in expect.intended and v == "FAIL"}
    assert not unrelated, f"{variant} also failed unrelated requirements {unrelated}\n{outcome['stdout']}"
    assert outcome["returncode"] != 0, "a MUST failure (or a strict SHOULD failure) must fail the run"
    assert outcome["result"]["verdict"] == "FAIL"


def test_no_process_of_the_broken_runs_is_left(runs):
    """Every gateway, broker and epmd the runs started is gone once they finish."""
    leftovers = RUNS.leftovers(runs, timeout=RUN_TIMEOUT_S + 60)
    assert not leftovers, f"processes left behind by the broken-gateway runs: {leftovers}"
