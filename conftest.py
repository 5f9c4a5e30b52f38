"""Repository-wide pytest configuration.

The harness plugin itself loads through its entry point (``realtime_conformance``),
so users get it wherever the package is installed. This file only keeps the
container tests out of runs that did not ask for them: they need a Docker
engine, which ``tox -e containers`` prepares.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _containers_requested(config: pytest.Config) -> bool:
    return "containers" in (config.getoption("markexpr", "") or "")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name == "containers" and collection_path.parent.name == "tests":
        return not _containers_requested(config)
    return None
