"""ORIG: the Origin header is checked exactly, on polling and on the websocket upgrade.

An allowed_origins entry may be a pattern (``https://*.example.com``): ORIG-1 then tries
concrete origins it matches, and ORIG-2's look-alikes include the registrable-domain tricks.
"""

from __future__ import annotations

import pytest

# Every suite test is an end-to-end check, and async whatever the project's asyncio_mode.
pytestmark = [pytest.mark.realtime, pytest.mark.asyncio]

TRANSPORTS = {"polling": ("polling",), "websocket": ("websocket",)}


@pytest.mark.requirement("ORIG-1")
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_listed_origins_are_accepted(conformance, transport):
    async with conformance.scenario() as sc:
        tenant, violations = sc.tenant(), []
        for origin in conformance.settings.allowed_origin_examples:
            c = sc.client(tenant, name=f"{tenant}/{origin}", transports=TRANSPORTS[transport], headers={"Origin": origin})
            if not await c.connect():
                violations.append(conformance.violation(
                    "Listed origin refused", f"Origin {origin} over {transport} was refused",
                    {"origin": origin, "transport": transport, "connect_errors": [e.data for e in c.connect_errors]}))
            else:
                await c.close()
        conformance.record("origins_tried", list(conformance.settings.allowed_origin_examples))
        conformance.fail(violations)


@pytest.mark.requirement("ORIG-2")
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unlisted_and_lookalike_origins_are_refused(conformance, transport):
    async with conformance.scenario() as sc:
        tenant, violations = sc.tenant(), []
        allowed = conformance.settings.allowed_origin_examples[0]  # a concrete origin, never a pattern
        control = sc.client(tenant, name=f"{tenant}/control", transports=TRANSPORTS[transport], headers={"Origin": allowed})
        if not await control.connect():
            conformance.unknown(f"the listed origin {allowed} was refused over {transport}, so refusals prove nothing")
        for origin in conformance.settings.forbidden_origins:
            c = sc.client(tenant, name=f"{tenant}/{origin}", transports=TRANSPORTS[transport],
                          headers={"Origin": origin}, expects_events=False)
            if await c.connect():
                violations.append(conformance.violation(
                    "Unlisted origin accepted", f"Origin {origin!r} over {transport} was connected; listed: "
                    f"{', '.join(conformance.settings.allowed_origins)}", {"origin": origin, "transport": transport}))
                await c.close()
        conformance.record("origins_tried", list(conformance.settings.forbidden_origins))
        conformance.fail(violations)
