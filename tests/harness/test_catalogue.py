"""The catalogue, CONFORMANCE.md, the shared catalogue and the suites' markers all agree."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from realtime_conformance.harness.judging import catalogue as _catalogue
ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "suites"
SHARED = Path("/work/shared/conformance-catalogue.md")
REGENERATE = "python -m realtime_conformance.harness.catalogue > CONFORMANCE.md"
ID_RE = r"[A-Z]+-\d+"


def test_conformance_md_is_generated_from_the_catalogue() -> None:
    text = (ROOT / "CONFORMANCE.md").read_text(encoding="utf-8")
    assert text == _catalogue.render_markdown(), f"CONFORMANCE.md is stale; run `{REGENERATE}`"


def test_catalogue_module_prints_the_markdown() -> None:
    out = subprocess.run([sys.executable, "-m", "realtime_conformance.harness.catalogue"], capture_output=True, text=True,
                         encoding="utf-8", cwd=ROOT, check=True).stdout
    assert out == _catalogue.render_markdown()


def test_ids_are_unique_and_well_formed() -> None:
    ids = [r.id for r in _catalogue.REQUIREMENTS]
    assert len(ids) == len(set(ids))
    for r in _catalogue.REQUIREMENTS:
        assert re.fullmatch(ID_RE, r.id), r.id
        assert r.area in _catalogue.AREAS, r.id
        assert r.level in ("MUST", "SHOULD"), r.id
    # Listed area by area, numbered 1..n within each area, so a reader finds them in order.
    for area in _catalogue.AREAS:
        numbers = [int(r.id.split("-")[1]) for r in _catalogue.REQUIREMENTS if r.area == area]
        assert numbers == list(range(1, len(numbers) + 1)), area


def test_get_names_the_known_ids_of_the_area() -> None:
    assert _catalogue.get("DLV-1").level == "MUST"
    with pytest.raises(KeyError) as excinfo:
        _catalogue.get("FAULT-9")
    assert excinfo.value.args[0] == "unknown requirement 'FAULT-9'; known here: FAULT-1, FAULT-2, FAULT-3, FAULT-4, FAULT-5, FAULT-6, FAULT-7"


def test_same_ids_and_levels_as_the_shared_catalogue() -> None:
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is absent: nothing to compare the catalogue's IDs and levels with")
    shared = dict(re.findall(rf"^- ({ID_RE}) (MUST|SHOULD):", SHARED.read_text(encoding="utf-8"), re.M))
    ours = {r.id: r.level for r in _catalogue.REQUIREMENTS}
    assert shared, f"no '- ID LEVEL:' lines found in {SHARED}"
    assert ours == shared


def _suite_files() -> list[Path]:
    return sorted(SUITES.glob("*.py"))


def _ids_used_in_suites() -> dict[str, list[str]]:
    used: dict[str, list[str]] = {}
    for path in _suite_files():
        for rid in re.findall(rf"""requirement\(\s*["']({ID_RE})["']""", path.read_text(encoding="utf-8")):
            used.setdefault(rid, []).append(path.name)
    return used


def test_every_requirement_has_a_test_in_suites() -> None:
    used = _ids_used_in_suites()
    untested = [r.id for r in _catalogue.ACTIVE if r.id not in used]
    assert untested == [], "requirements with no test in suites/ (they would report UNKNOWN)"


def test_every_id_used_in_suites_is_in_the_catalogue() -> None:
    unknown = {rid: files for rid, files in _ids_used_in_suites().items() if rid not in {r.id for r in _catalogue.ACTIVE}}
    assert unknown == {}


def _is_requirement_marker(decorator: ast.expr) -> bool:
    # @pytest.mark.requirement("ID") or @mark.requirement("ID")
    return (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
            and decorator.func.attr == "requirement")


def _module_marked(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            values = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
            if any(_is_requirement_marker(v) for v in values):
                return True
    return False


def _unmarked_tests(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    if _module_marked(tree):
        return []
    missing = []
    for node in tree.body:
        scopes = [(node, [])]
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            scopes = [(n, node.decorator_list) for n in node.body]
        for fn, outer in scopes:
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name.startswith("test"):
                if not any(_is_requirement_marker(d) for d in [*outer, *fn.decorator_list]):
                    missing.append(f"{path.name}::{fn.name} (line {fn.lineno})")
    return missing


def test_every_suite_test_has_a_requirement_marker() -> None:
    files = sorted(SUITES.glob("test_*.py"))
    assert files, f"no suites found in {SUITES}"
    missing = [t for path in files for t in _unmarked_tests(path)]
    assert missing == [], "every suite test names its requirement with @pytest.mark.requirement('ID')"


def test_marker_scan_finds_unmarked_tests(tmp_path: Path) -> None:
    """The scan above would catch a suite test without a marker (so its passing means something)."""
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import pytest\n\n"
        "@pytest.mark.requirement('DLV-1')\nasync def test_marked(conformance):\n    pass\n\n"
        "@pytest.mark.realtime\nasync def test_unmarked(conformance):\n    pass\n\n"
        "def test_plain():\n    pass\n\n"
        "def helper():\n    pass\n\n"
        "@pytest.mark.requirement('ISO-1')\nclass TestGroup:\n    def test_in_class(self):\n        pass\n",
        encoding="utf-8")
    assert _unmarked_tests(sample) == ["test_sample.py::test_unmarked (line 8)", "test_sample.py::test_plain (line 11)"]


def test_changelog_accounts_for_every_id() -> None:
    """Adding or retiring an ID needs a new CHANGELOG entry in harness/judging/catalogue.py, so a
    pinned configuration learns of it; this fails until the entry is there."""
    versions = [c.version for c in _catalogue.CHANGELOG]
    assert len(versions) == len(set(versions)), "each catalogue version appears once"
    assert _catalogue.CATALOGUE_VERSION == versions[-1]
    added: list[str] = []
    for change in _catalogue.CHANGELOG:
        assert not set(change.added) & set(added), f"version {change.version} re-adds an ID (IDs are never reused)"
        for rid in change.retired:
            assert rid in added, f"version {change.version} retires {rid}, which no earlier version added"
        added += change.added
    missing = [r.id for r in _catalogue.REQUIREMENTS if r.id not in added]
    assert not missing, (f"{missing} are in REQUIREMENTS but in no CHANGELOG entry: add them to a new "
                         "Change(...) at the end of CHANGELOG")
    flagged = [r.id for r in _catalogue.REQUIREMENTS if getattr(r, "retired", None)]
    unlogged = [i for i in flagged if _catalogue.retired_in(i) is None]
    assert not unlogged, f"{unlogged} are marked retired but no CHANGELOG entry retires them"
    unknown = [i for i in added if i not in _catalogue.BY_ID and _catalogue.retired_in(i) is None]
    assert not unknown, f"{unknown} were added by the CHANGELOG but are neither in REQUIREMENTS nor retired"


def test_ids_and_compact_are_inverses() -> None:
    spec = ("AUTH-1", "AUTH-2", "AUTH-3", "DLV-7", "MET-5", "MET-6")
    assert _catalogue.compact(spec) == "AUTH-1..3, DLV-7, MET-5..6"
    assert _catalogue.ids("AUTH-1..3 DLV-7 MET-5..6") == spec
    assert _catalogue.changes_since(_catalogue.CATALOGUE_VERSION) == ([], [])
    with pytest.raises(KeyError):
        _catalogue.changes_since("no-such-version")


def test_conformance_md_names_the_catalogue_version() -> None:
    text = _catalogue.render_markdown()
    assert f"Catalogue version {_catalogue.CATALOGUE_VERSION}." in text.splitlines()[:4]
    assert "## Changelog" in text
