"""FAULT-5: a gateway started with a missing or weak JWT secret refuses to start."""

from __future__ import annotations

import pytest

# Every suite test is an end-to-end check, and async whatever the project's asyncio_mode.
pytestmark = [pytest.mark.realtime, pytest.mark.asyncio]


@pytest.mark.requirement("FAULT-5")
@pytest.mark.parametrize("secret", ["missing", "weak"])
async def test_refuses_to_start_without_a_strong_secret(conformance, secret):
    conformance.require("restart", "the harness must start the gateway itself to try bad secrets")
    value = None if secret == "missing" else "short-secret-16b"
    attempt = await conformance.target.try_start({"{jwt_secret}": value}, timeout=10)
    conformance.record(f"{secret}: outcome", attempt["outcome"])
    conformance.record(f"{secret}: exit code", attempt["returncode"])
    if attempt["outcome"] != "exited":
        conformance.fail([conformance.violation(
            f"Started with a {secret} secret",
            f"with JWT secret {secret}, the gateway {attempt['outcome']} instead of exiting with an error",
            {"log_tail": attempt["log"][-1500:]}, severity="medium")])
