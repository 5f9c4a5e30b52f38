"""``realtime-conformance``: run the installed suites against the target this folder's config names.

A thin wrapper over pytest: the config is found from the current directory as pytest always
finds it (pytest.ini, pyproject.toml [tool.pytest.ini_options], tox.ini, setup.cfg), the
suites come from the installed package, and every argument goes to pytest unchanged.
``pytest --pyargs realtime_conformance.suites -m realtime`` does the same.
"""

from __future__ import annotations

import sys

import pytest

SUITES = "realtime_conformance.suites"


def pytest_args(argv: list[str]) -> list[str]:
    """The pytest command line for ``argv``: the suites, ``-m realtime`` unless a marker was given."""
    args = list(argv)
    if not any(a == "-m" or a.startswith("-m") and not a.startswith("--") for a in args):
        args = ["-m", "realtime", *args]
    return ["--pyargs", SUITES, *args]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns pytest's exit code."""
    return int(pytest.main(pytest_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    raise SystemExit(main())
