"""A graceful stop is measured: how long the SIGTERM took, and whether the harness had to SIGKILL.

FAULT-7 judges a gateway on these numbers, so they are checked here on plain processes: one that
exits on SIGTERM, one that ignores it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from realtime_conformance.harness.providers.gateway import STOP_MARGIN_S, CommandGateway, quick_grace
from realtime_conformance.harness.providers.processes import ManagedProcess

# Ready once it has printed its line: the SIGTERM handler is in place by then.
EXITS = "import signal, sys, time; print('rea' + 'dy', flush=True); time.sleep(60)"
IGNORES = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('rea' + 'dy', flush=True); "
           "time.sleep(60)")


def _up(proc: ManagedProcess) -> ManagedProcess:
    proc.start()
    for _ in range(200):  # bounded: 10 s
        if "ready" in proc.log_tail():
            break
        time.sleep(0.05)
    return proc


def _started(tmp_path: Path, code: str) -> ManagedProcess:
    return _up(ManagedProcess([sys.executable, "-c", code], name="sleeper", log_path=tmp_path / "sleeper.log"))


def test_a_process_that_exits_on_sigterm_is_not_escalated(tmp_path: Path) -> None:
    proc = _started(tmp_path, EXITS)
    proc.terminate(timeout=5)
    stop = proc.last_stop
    assert stop is not None and not stop.escalated
    assert stop.elapsed_s < 5 and stop.waited_s == 5
    assert stop.returncode == -15  # killed by its SIGTERM


def test_a_process_that_ignores_sigterm_is_killed_after_the_wait(tmp_path: Path) -> None:
    proc = _started(tmp_path, IGNORES)
    proc.terminate(timeout=1)
    stop = proc.last_stop
    assert stop is not None and stop.escalated
    assert 1 <= stop.elapsed_s < 5
    assert stop.returncode == -9
    assert stop.as_dict()["escalated_to_sigkill"] is True


def test_a_gateway_stop_waits_the_bound_plus_the_margin(tmp_path: Path) -> None:
    gateway = CommandGateway([sys.executable, "-c", IGNORES], url="http://127.0.0.1:9", env={},
                             log_path=tmp_path / "gw.log", stop_grace_s=1.0)
    _up(gateway._process)  # no Engine.IO here: only the stop is under test
    stop = gateway.stop()
    assert stop is not None and stop.escalated and stop.waited_s == 1.0 + STOP_MARGIN_S
    assert gateway.last_stop is stop


def test_stops_that_judge_nothing_are_short() -> None:
    assert quick_grace(10.0) == 3.0
    assert quick_grace(1.5) == 1.5  # never longer than the bound itself
