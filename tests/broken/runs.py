"""Conformance runs in subprocesses, as the broken-gateway tests need them: the command, the
report it wrote, a mark in the environment so any process a run leaves behind can be found,
and the pieces every such module shares (the variants selected, runs started together)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Mapping

import pytest

from realtime_conformance.harness.providers.processes import processes_with_env


class MarkedRuns:
    """Runs that carry one environment mark, so a test can ask whether any left a process."""

    def __init__(self, name: str) -> None:
        self.name, self.value = name, uuid.uuid4().hex

    def run(self, command: list[str], *, cwd: Path, report_dir: Path, timeout: float) -> dict:
        """Run ``command``; its exit code, output tails and compliance.json (None if none was written)."""
        env = {**os.environ, self.name: self.value}
        env.pop("PYTEST_ADDOPTS", None)
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        report = report_dir / "compliance.json"
        return {"returncode": done.returncode, "stdout": done.stdout[-6000:], "stderr": done.stderr[-3000:],
                "result": json.loads(report.read_text()) if report.exists() else None}

    def leftovers(self, futures: Mapping[str, Future], timeout: float) -> list[tuple[int, str]]:
        """Once every run has ended: the processes that still carry this mark."""
        for future in futures.values():
            future.exception(timeout=timeout)
        return processes_with_env(self.name, self.value)


def selected_variants(request: pytest.FixtureRequest) -> list[str]:
    """The ``variant`` parameters of the module's tests this session will run, in order, once each."""
    return list(dict.fromkeys(item.callspec.params["variant"] for item in request.session.items
                              if getattr(item, "callspec", None) and "variant" in item.callspec.params
                              and item.module is request.module))


@contextlib.contextmanager
def started(jobs: Mapping[str, Callable[[], dict]], workers: int) -> Iterator[dict[str, Future]]:
    """Start every job at once, ``workers`` at a time; tests wait on their own future."""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield {name: pool.submit(job) for name, job in jobs.items()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def verdicts(outcome: dict, *, skipped: bool = False) -> dict[str, str]:
    """Requirement -> verdict of a run's report (SKIPPED ones left out unless ``skipped``)."""
    assert outcome["result"] is not None, (
        f"no compliance.json was written (exit {outcome['returncode']}):\n{outcome['stdout']}\n{outcome['stderr']}")
    return {r["id"]: r["verdict"] for r in outcome["result"]["requirements"] if skipped or r["verdict"] != "SKIPPED"}
