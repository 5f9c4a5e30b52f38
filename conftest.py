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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A variant the session judges with the whole suite (tests/test_collateral.py) skips its focused
    run in tests/test_broken_gateways.py: the whole-suite run asserts the same FAIL and more (no
    collateral anywhere), so the focused one would only cost a conformance run."""
    whole = {item.callspec.params["variant"] for item in items
             if item.path.name == "test_collateral.py" and hasattr(item, "callspec")}
    focused = [item for item in items
               if item.path.name == "test_broken_gateways.py" and hasattr(item, "callspec")
               and item.originalname == "test_broken_gateway_is_caught_on_its_requirement_only"
               and item.callspec.params.get("variant") in whole]
    if focused:
        config.hook.pytest_deselected(items=focused)
        items[:] = [item for item in items if item not in focused]
