"""The pytest entry of the bench: ``realtime-conformance bench`` runs this file's one test.

Not named test_*.py and not in any testpaths, so neither the repository's ``pytest`` nor
``-m realtime`` ever collects it; it runs only when named, which the ``bench`` command does.
"""

from __future__ import annotations

import pytest

from realtime_conformance.harness import plugin
from realtime_conformance.harness.bench import options, runner

pytestmark = pytest.mark.bench


def test_bench(pytestconfig: pytest.Config, conformance_settings) -> None:
    """Run the bench as configured; it records numbers and fails only when it could not run."""
    config = pytestconfig.stash.get(plugin.BENCH_KEY, None) or options.resolve(pytestconfig)
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:
        """Progress as it happens, past pytest's output capture (a run takes minutes)."""
        if reporter is None:  # pragma: no cover - no terminal (e.g. -p no:terminal)
            print(line)
            return
        if capture is None:
            reporter.write_line(line)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    result = runner.run(conformance_settings, config, say)
    assert result["steps"], "the bench ran no step"
