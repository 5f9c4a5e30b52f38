"""The suites are the first users of the public API: they import nothing else of the harness."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import realtime_conformance.harness as api

ROOT = Path(__file__).resolve().parents[2]
# What a suite (or a user's check) may import from this distribution.
PUBLIC = {"realtime_conformance.harness", "realtime_conformance.harness.strategies",
          "realtime_conformance.harness.samples", "realtime_conformance.contract"}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from realtime_conformance import contract`` imports realtime_conformance.contract
            names += ([f"{node.module}.{a.name}" for a in node.names] if node.module == "realtime_conformance"
                      else [node.module])
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "suites").glob("*.py")) + [ROOT / "examples/checks/test_inbound.py"],
                         ids=lambda p: p.name)
def test_suites_import_only_the_public_api(path: Path) -> None:
    ours = [n for n in _imports(path) if n.startswith(("realtime_conformance", "harness", "gateway", "contract"))]
    private = [n for n in ours if n not in PUBLIC]
    assert private == [], f"{path.name} imports what is not public API: {private}"


def test_everything_the_api_lists_exists() -> None:
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert missing == []


def test_nothing_imports_the_old_top_level_names() -> None:
    offenders = {}
    for folder in ("harness", "suites", "gateway", "contract", "tests", "examples"):
        for path in (ROOT / folder).rglob("*.py"):
            bad = [n for n in _imports(path) if n.split(".")[0] in ("harness", "gateway", "contract")]
            if bad:
                offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_the_gateway_never_imports_the_harness() -> None:
    offenders = {str(p.relative_to(ROOT)): [n for n in _imports(p) if "harness" in n]
                 for p in (ROOT / "gateway").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_worked_check_in_the_docs_is_the_example_file() -> None:
    doc = (ROOT / "docs" / "writing-checks.md").read_text(encoding="utf-8")
    example = (ROOT / "examples" / "checks" / "test_inbound.py").read_text(encoding="utf-8")
    assert example[example.index("import pytest"):] in doc


def test_the_command_runs_the_installed_suites_and_a_users_check(tmp_path: Path) -> None:
    """realtime-conformance from another folder: the suites come from the package, the check from
    the path given, and the reports land next to the folder's own config."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_inbound.py").write_text((ROOT / "examples/checks/test_inbound.py").read_text(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RTC_", "PYTEST_"))}
    done = subprocess.run([sys.executable, "-m", "realtime_conformance.harness.cli", "checks/", "-q", "-p",
                           "no:cacheprovider", "--requirements", "DLV-1", "-k", "test_inbound",
                           "--hypothesis-profile", "ci"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "test_inbound_update_reaches_every_tab PASSED" in done.stdout or "passed" in done.stdout
    report = (tmp_path / "reports" / "compliance.json").read_text()
    assert '"verdict": "PASS"' in report and "test_inbound.py::test_inbound_update_reaches_every_tab" in report
