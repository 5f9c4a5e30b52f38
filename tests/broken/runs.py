"""One conformance run in a subprocess, as a broken-gateway test needs it: the command, the
report it wrote, and a mark in the environment so any process it leaves behind can be found."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path


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


def verdicts(outcome: dict, *, skipped: bool = False) -> dict[str, str]:
    """Requirement -> verdict of a run's report (SKIPPED ones left out unless ``skipped``)."""
    assert outcome["result"] is not None, (
        f"no compliance.json was written (exit {outcome['returncode']}):\n{outcome['stdout']}\n{outcome['stderr']}")
    return {r["id"]: r["verdict"] for r in outcome["result"]["requirements"] if skipped or r["verdict"] != "SKIPPED"}
