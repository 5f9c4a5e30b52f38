"""realtime-conformance's command line: the suites, -m realtime, and the config of the current folder."""

from __future__ import annotations

from pathlib import Path

from realtime_conformance.harness.cli import find_config, pytest_args

QUIET = ("-o", "asyncio_default_fixture_loop_scope=function")
W = ("-W", "ignore::pytest.PytestAssertRewriteWarning")


def test_finds_the_config_pytest_would_use(tmp_path: Path) -> None:
    project = tmp_path / "project"
    sub = project / "sub"
    sub.mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no pytest section: not a config
    assert find_config(sub) is None
    (project / "tox.ini").write_text("[pytest]\nqueue = q\n")
    assert find_config(sub) == project / "tox.ini"
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\nqueue = 'q'\n")
    assert find_config(sub) == project / "pyproject.toml"  # pytest's order: pyproject before tox.ini
    (sub / "setup.cfg").write_text("[metadata]\nname = x\n")
    assert find_config(sub) == project / "pyproject.toml"
    (sub / "pytest.ini").write_text("")  # a pytest.ini counts even when empty
    assert find_config(sub) == sub / "pytest.ini"


def test_pins_the_config_so_a_value_is_never_taken_for_a_path(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    args = pytest_args(["--report-dir", "/tmp/r"], cwd=tmp_path)
    assert args == ["--pyargs", "realtime_conformance.suites", *W, *QUIET, "-c", str(tmp_path / "pytest.ini"),
                    "-m", "realtime", "--report-dir", "/tmp/r"]


def test_a_config_named_on_the_command_line_wins(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    for given in (["-c", "other.ini"], ["-cother.ini"], ["--config-file=other.ini"], ["--rootdir", "x"]):
        args = pytest_args([*given, "-m", "not slow"], cwd=tmp_path)
        assert str(tmp_path / "pytest.ini") not in args
        assert args == ["--pyargs", "realtime_conformance.suites", *W, *QUIET, *given, "-m", "not slow"]


def test_no_config_anywhere_adds_nothing(tmp_path: Path) -> None:
    assert pytest_args([], cwd=tmp_path) == ["--pyargs", "realtime_conformance.suites", *W, *QUIET, "-m", "realtime"]


def test_the_projects_own_loop_scope_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\nasyncio_default_fixture_loop_scope = 'module'\n")
    assert pytest_args([], cwd=tmp_path) == ["--pyargs", "realtime_conformance.suites", *W, "-c",
                                             str(tmp_path / "pyproject.toml"), "-m", "realtime"]
