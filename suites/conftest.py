"""Every test in suites/ is an end-to-end conformance check: marked ``realtime``."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/suites/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.realtime)
