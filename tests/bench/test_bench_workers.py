"""The bench over Locust workers, with real processes: a master, workers, their clean children,
a private broker and the reference gateway. Small steps; numbers are not asserted, correctness is
(every delivery record reaches the checker), and so is that every process started is reaped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realtime_conformance.harness.providers.broker import RABBITMQ_SERVER

needs_broker = pytest.mark.skipif(not RABBITMQ_SERVER.exists(), reason="needs rabbitmq-server for a private broker")
# Found, never imported: importing Locust would gevent-patch this test process (see options.py).
pytestmark = pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="needs the bench extra's Locust")

CLI = [sys.executable, "-c", "from realtime_conformance.harness.cli import main; raise SystemExit(main())"]
WRONG = ("lost", "duplicated", "cross_tenant", "out_of_order", "altered", "unrecognised")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> set[int]:
    import psutil

    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def _judged(step: dict) -> None:
    assert step["connect"]["failed"] == 0
    assert {k: step[k] for k in WRONG} == dict.fromkeys(WRONG, 0)
    assert sum(w["clients"] for w in step["workers"]) == step["clients"]
    assert sum(w["deliveries"] for w in step["workers"]) >= step["deliveries"] >= step["clients"]


@needs_broker
def test_two_local_workers_measured_clock_and_two_publishers(tmp_path: Path):
    out = tmp_path / "bench"
    command = [*CLI, "bench", "--broker", "process", "--bench-steps", "12/4@20", "--bench-step-s", "1",
               "--bench-drain-s", "5", "--bench-workers", "2", "--bench-clock", "measured", "--bench-publishers", "2",
               "--bench-report-dir", str(out), "-q"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "bench.json").read_text())
    assert result["schema"] == "realtime-conformance/bench/2" and result["config"]["workers"] == 2
    step = result["steps"][0]
    _judged(step)
    assert [w["worker"] for w in step["workers"]] == [0, 1] and step["publishers"] == 2
    assert step["clock"]["mode"] == "measured" and isinstance(step["latency_trusted"], bool)
    for w in step["workers"]:
        c = w["clock"]
        assert c["measured"] and abs(c["before"]["offset_ms"]) <= c["before"]["rtt_ms"]  # one machine: offset ~ 0
        assert w["cpu_pct"] is not None and w["loop_lag_p99_ms"] is not None
    assert "Per worker" in (out / "bench.html").read_text()


@needs_broker
def test_workers_started_as_separate_commands_join_the_master(tmp_path: Path):
    """As on two machines: the bench starts no worker; two `bench-worker` commands join it by port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "bench"
    bench = subprocess.Popen([*CLI, "bench", "--broker", "process", "--bench-steps", "8/2@10", "--bench-step-s", "1",
                              "--bench-drain-s", "5", "--bench-workers", "2", "--bench-worker-start", "none",
                              "--bench-master-bind", f"127.0.0.1:{port}", "--bench-client", "socketio",
                              "--bench-report-dir", str(out), "-q"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    workers = [subprocess.Popen([*CLI, "bench-worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
               for _ in range(2)]
    try:
        output, _ = bench.communicate(timeout=240)
        assert bench.returncode == 0, output[-3000:]
        for w in workers:  # the master tells its workers to quit when the bench ends
            assert w.wait(30) == 0
    finally:
        for p in (bench, *workers):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL) if p in workers else p.kill()
                p.wait(10)
    step = json.loads((out / "bench.json").read_text())["steps"][0]
    _judged(step)
    assert step["client"] == "socketio" and step["clock"]["mode"] == "measured"


def test_every_process_is_reaped_on_ctrl_c(tmp_path: Path):
    """A fleet interrupted while it runs leaves no master, worker or child behind."""
    script = tmp_path / "fleet.py"
    script.write_text(
        "import asyncio, json, sys\n"
        "from realtime_conformance.harness.bench.fleet import Fleet\n"
        "async def main():\n"
        "    async with Fleet(2) as fleet:\n"
        "        print(json.dumps([w['agent_pid'] for w in fleet.joined]), flush=True)\n"
        "        await asyncio.sleep(120)\n"
        "asyncio.run(main())\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        agents = json.loads(proc.stdout.readline())  # bounded by the fleet's own start timeouts
        started = _descendants(proc.pid)
        assert len(agents) == 2 and set(agents) <= started and len(started) >= 5  # master, 2 workers, 2 agents
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in started if _alive(p)]


def test_a_worker_child_that_dies_fails_the_request_at_once(tmp_path: Path):
    """A clean child killed mid-run: the waiting request fails with a message naming it, not a timeout."""
    script = tmp_path / "fleet.py"
    script.write_text(
        "import asyncio, os, signal, time\n"
        "from realtime_conformance.harness.bench.fleet import Fleet, FleetError\n"
        "async def main():\n"
        "    async with Fleet(1) as fleet:\n"
        "        pending = asyncio.create_task(fleet.request({0: {'op': 'drain', 'expect': 1, 'timeout': 60}}, 90))\n"
        "        await asyncio.sleep(0.5)\n"
        "        os.kill(fleet.joined[0]['agent_pid'], signal.SIGKILL)\n"
        "        started = time.monotonic()\n"
        "        try:\n"
        "            await pending\n"
        "        except FleetError as exc:\n"
        "            print('failed after', round(time.monotonic() - started, 1), str(exc).splitlines()[0])\n"
        "asyncio.run(main())\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert "the bench agent process ended" in done.stdout, done.stdout + done.stderr[-2000:]
    assert float(done.stdout.split("failed after ")[1].split()[0]) < 10
