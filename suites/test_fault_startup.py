"""FAULT-5 and FAULT-6: how a gateway starts: never with a weak secret, and not for nothing while
its broker is unreachable."""

from __future__ import annotations

import asyncio
import time

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


FAULT6_LIMIT_S = 30.0  # as FAULT-1's: a broker coming back is a broker coming back
FAULT6_HOLD_S = 3.0  # how long the broker stays unreachable after the gateway answers


@pytest.mark.requirement("FAULT-6")
@pytest.mark.parametrize("down", ["refused", "reset"])
async def test_consumes_once_a_broker_unreachable_at_start_returns(conformance, down):
    """A gateway started while its broker is unreachable (deploys race their brokers; pods start
    before the broker's Service has endpoints) must keep trying and consume once it is back."""
    conformance.require("restart", "the harness must start the gateway itself, with its broker link down")
    held = conformance.settings.target_kind == "process"  # a loopback proxy on its broker link
    if not held and down == "reset":
        conformance.not_applicable("an accepted-then-reset broker connection needs the harness's loopback proxy "
                                   "on the broker link, which a container cannot reach (the refused case runs)")
    if not held:
        conformance.require_restartable_broker()
    async with conformance.target.dedicated(f"fault6-{down}", broker_link=held, own_broker=not held,
                                            broker_down=down) as instance:
        link = instance.broker_link
        t0 = time.perf_counter()
        # The gateway answers Socket.IO by now (start() waits for that). Its first broker connection
        # has met the fault once the proxy reset one, or after a bounded hold.
        deadline = time.monotonic() + FAULT6_HOLD_S
        while time.monotonic() < deadline and not (link is not None and link.refused_total):
            await asyncio.sleep(0.1)
        conformance.record(f"{down}: connections reset while down" if down == "reset" else f"{down}: how",
                           link.refused_total if down == "reset" and link is not None
                           else "nothing listened on the broker's address" if link is not None
                           else "the broker itself was down")
        if link is not None:
            link.pass_through()
        else:
            await asyncio.to_thread(instance.broker.start)
        back = time.perf_counter() - t0
        conformance.record_timeline(back * 1000, f"broker reachable again (was {down})")
        try:
            await instance.wait_ready(FAULT6_LIMIT_S)
        except TimeoutError:
            conformance.fail([conformance.violation(
                "Never consumes after starting without its broker",
                f"started while its broker was unreachable ({'connection refused' if down == 'refused' else 'accepted, then reset'}), "
                f"the gateway had no consumer on {instance.queue} within {FAULT6_LIMIT_S:.0f} s of the broker "
                "becoming reachable", {"log_tail": instance.gateway.logs()[-2000:]})])
        took = time.perf_counter() - t0 - back
        conformance.record(f"{down}: consuming after s", round(took, 2))
        conformance.record_timeline((time.perf_counter() - t0) * 1000, "consuming")
