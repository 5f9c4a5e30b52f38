"""The flood process and the memory reader, against real processes and sockets on loopback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from realtime_conformance.harness import Flood, FloodPlan, gateway_memory
from realtime_conformance.harness.providers.gateway import UrlGateway
from realtime_conformance.harness.providers.memory import docker_stats_bytes, process_tree, tree_rss
from realtime_conformance.harness.providers.ports import free_port

# A parent that starts a child holding 40 MiB, then waits: the tree's RSS must count the child.
HOLDER = ("import subprocess, sys, time; "
          "c = subprocess.Popen([sys.executable, '-c', 'import time; b = bytearray(b\"x\") * (40 << 20); "
          "print(1, flush=True); time.sleep(30)'], stdout=subprocess.PIPE); c.stdout.readline(); "
          "print(c.pid, flush=True); time.sleep(30)")


def test_tree_rss_counts_the_whole_process_tree() -> None:
    parent = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        child = int(parent.stdout.readline())  # the child has allocated by now
        assert child in process_tree(parent.pid)
        reading = tree_rss(parent.pid)
        assert reading.processes == 2 and reading.bytes is not None and reading.bytes > 40 << 20, reading
        assert reading.source.startswith("/proc")
    finally:
        import os
        import signal
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(5)
    assert tree_rss(parent.pid).bytes is None and "not running" in tree_rss(parent.pid).unknown


def test_a_url_target_has_no_memory_and_says_why() -> None:
    reading = gateway_memory(UrlGateway("http://127.0.0.1:1"))
    assert reading.bytes is None and "URL target" in reading.unknown


def test_docker_stats_figure_is_usage_less_inactive_file_cache() -> None:
    assert docker_stats_bytes({"memory_stats": {"usage": 100, "stats": {"inactive_file": 30}}}) == 70  # cgroup v2
    assert docker_stats_bytes({"memory_stats": {"usage": 100, "stats": {"total_inactive_file": 40}}}) == 60  # v1
    assert docker_stats_bytes({"memory_stats": {}}) is None  # no memory cgroup


@pytest.mark.parametrize("url", ["http://10.0.0.5:3015", "http://example.com"])
def test_a_flood_is_aimed_at_loopback_only(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FloodPlan(url=url, refused=1)


def test_a_flood_plan_is_bounded() -> None:
    with pytest.raises(ValueError, match="max_s"):
        FloodPlan(url="http://127.0.0.1:1", refused=1, max_s=600)
    with pytest.raises(ValueError, match="token"):
        FloodPlan(url="http://127.0.0.1:1", connections=5)


@pytest.mark.asyncio
async def test_a_flood_runs_in_its_own_process_and_reports_each_phase() -> None:
    """Nothing listens on the port: every handshake of the flood fails to connect, and says so."""
    plan = FloodPlan(url=f"http://127.0.0.1:{free_port()}", refused=20, concurrency=4, max_s=10)
    started = time.perf_counter()
    async with Flood(plan) as flood:
        assert await flood.started()
        report = await flood.report()
    assert time.perf_counter() - started < 10
    assert report.error == "" and report.phases["refused"]["no_connection"] == 20, report
    assert flood.phase_at(time.perf_counter()) == "done"
    assert report.span("refused") is not None
