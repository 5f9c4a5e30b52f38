"""``realtime-conformance``: run the installed suites against the target this folder's config names.

A thin wrapper over pytest: the suites come from the installed package, and every argument goes
to pytest unchanged. One thing is pinned first: the config file. pytest finds it from the paths
on its command line before any plugin has said which options take a value, so in
``--report-dir /tmp/r`` it takes ``/tmp/r`` for a path to test, and once that folder exists it
looks for the config there, not here. This command finds the config from the current directory
as pytest would with no arguments (pytest.ini, .pytest.ini, pyproject.toml with
[tool.pytest.ini_options], tox.ini with [pytest], setup.cfg with [tool:pytest]) and passes it
with ``-c``, unless the command line names one itself (``-c``, ``--config-file``, ``--rootdir``).
``pytest --pyargs realtime_conformance.suites -m realtime`` does the rest the same way.
"""

from __future__ import annotations

import configparser
import sys
import tomllib
from pathlib import Path

import pytest

SUITES = "realtime_conformance.suites"
CONFIG_NAMES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
_PINNING = ("-c", "--config-file", "--inifile", "--rootdir")
LOOP_SCOPE = "asyncio_default_fixture_loop_scope"


def _holds_pytest_config(path: Path) -> bool:
    """Whether pytest would take ``path`` as its config file (its rules, by file name)."""
    if path.name in ("pytest.ini", ".pytest.ini"):
        return True
    try:
        if path.name == "pyproject.toml":
            tool = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {})
            return isinstance(tool.get("pytest"), dict)
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path, encoding="utf-8")
    except (OSError, ValueError, configparser.Error):
        return False
    return parser.has_section("pytest" if path.name == "tox.ini" else "tool:pytest")


def _sets(path: Path, key: str) -> bool:
    """Whether the config file sets ini ``key`` (the file pytest reads it from, by its rules)."""
    try:
        if path.name == "pyproject.toml":
            options = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("pytest", {})
            return key in options.get("ini_options", {})
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path, encoding="utf-8")
    except (OSError, ValueError, configparser.Error):
        return False
    section = "tool:pytest" if path.name == "setup.cfg" else "pytest"
    return parser.has_option(section, key)


def find_config(start: Path) -> Path | None:
    """The config file pytest would use when run without arguments in ``start``."""
    for folder in (start, *start.parents):
        for name in CONFIG_NAMES:
            candidate = folder / name
            if candidate.is_file() and _holds_pytest_config(candidate):
                return candidate
    return None


def pytest_args(argv: list[str], cwd: Path | None = None) -> list[str]:
    """The pytest command line for ``argv``: the suites, ``-m realtime`` unless a marker was
    given, and the config file of ``cwd`` unless one was named."""
    args = list(argv)
    if not any(a == "-m" or a.startswith("-m") and not a.startswith("--") for a in args):
        args = ["-m", "realtime", *args]
    pinned = any(a == p or a.startswith(p + "=") or (p == "-c" and a.startswith("-c") and len(a) > 2)
                 for a in args for p in _PINNING)
    config = None if pinned else find_config((cwd or Path.cwd()).resolve())
    if config is not None:
        args = ["-c", str(config), *args]
    # The suites have no async fixtures; this only quiets pytest-asyncio's warning about an unset
    # default, and is left to the project when its config sets it.
    if not (config is not None and _sets(config, LOOP_SCOPE)) and not any(LOOP_SCOPE in a for a in args):
        args = ["-o", f"{LOOP_SCOPE}=function", *args]
    # This command imported realtime_conformance before pytest could mark the plugin's package for
    # assertion rewriting; pytest warns about that, and nothing in the suites relies on it.
    return ["--pyargs", SUITES, "-W", "ignore::pytest.PytestAssertRewriteWarning", *args]


BENCH_MODULE = "realtime_conformance.harness.bench.session"


def bench_args(argv: list[str], cwd: Path | None = None) -> list[str]:
    """``realtime-conformance bench ARGS``: the bench module instead of the suites, ``-m bench``,
    and the same config pinning; ARGS are pytest's and the bench's options (docs/bench.md)."""
    args = pytest_args(["-m", "bench", "-p", "no:cacheprovider", *argv], cwd)
    return [BENCH_MODULE if a == SUITES else a for a in args]


WORKER_USAGE = ("usage: realtime-conformance bench-worker --master-host HOST --master-port PORT [LOCUST OPTIONS]\n"
                "  joins the Locust master of a running 'realtime-conformance bench --bench-workers N "
                "--bench-worker-start none' (docs/bench.md)")


def bench_worker(argv: list[str]) -> int:
    """``realtime-conformance bench-worker``: one Locust worker of the bench, joining a master by
    host and port (Locust's own --master-host / --master-port), run in place of this process."""
    if "-h" in argv or "--help" in argv or not any(a.startswith("--master-port") for a in argv) \
            or not any(a.startswith("--master-host") for a in argv):
        print(WORKER_USAGE, file=sys.stderr if not ("-h" in argv or "--help" in argv) else sys.stdout)
        return 0 if ("-h" in argv or "--help" in argv) else 2
    import importlib.util
    import os

    if importlib.util.find_spec("locust") is None:
        print("realtime-conformance bench-worker needs Locust: pip install 'realtime-conformance[bench]'",
              file=sys.stderr)
        return 2
    locustfile = Path(__file__).parent / "bench" / "locustfile.py"
    command = [sys.executable, "-m", "locust", "-f", str(locustfile), "--worker", *argv]
    os.execv(sys.executable, command)
    return 0  # pragma: no cover - execv does not return


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns pytest's exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench-worker"]:
        return bench_worker(argv[1:])
    if argv[:1] == ["bench"]:
        return int(pytest.main(bench_args(argv[1:])))
    return int(pytest.main(pytest_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
