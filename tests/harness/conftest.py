"""Shared by the harness's own tests: a clean environment for in-process pytester runs.

(pytester itself is enabled per module with ``pytest_plugins``: a conftest below the
rootdir may not define it.)
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest
from hypothesis import settings as hypothesis_settings


@pytest.fixture
def clean_env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No RTC_* variable from the developer's shell may leak into an inner run's settings.

    Depends on ``pytester`` so it runs after it: pytester clears PYTEST_ADDOPTS when created.
    The plugin loads a Hypothesis profile at configure; an in-process inner run would leave
    it loaded for the outer session, so the outer profile is restored afterwards.
    """
    for name in list(os.environ):
        if name.startswith("RTC_"):
            monkeypatch.delenv(name)
    # Inner runs have no ini of ours; keep pytest-asyncio's "loop scope unset" nag out of them.
    monkeypatch.setenv("PYTEST_ADDOPTS", "-o asyncio_default_fixture_loop_scope=function")
    profile = hypothesis_settings.get_current_profile_name()
    yield monkeypatch
    hypothesis_settings.load_profile(profile)
