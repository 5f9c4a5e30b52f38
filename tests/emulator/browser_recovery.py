"""The real client's side of recovery, for the emulator self-test (tests/test_emulator_vs_browser.py) only.

RECON-4 and AUTH-12 are judged on the wire by the emulator's connection state recovery
(``RecoveringClient``, under ``PortalTab``). These two checks judge the same requirements with
socket.io-client 4 itself, in the portal page in Chromium, so the self-test can compare the two.
They are not suite checks: the self-test passes this file by path to its own runs, so no
conformance run (and no CI step) pays for them. The file name keeps ``pytest tests`` from
collecting it (its checks need the conformance plugin's ``conformance`` and ``portal_browser``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Callable
from urllib.parse import urlsplit

import pytest

from realtime_conformance.harness import FaultProxy

pytestmark = [pytest.mark.realtime, pytest.mark.asyncio, pytest.mark.browser]

LIVE_S = 15.0
RECONNECTS = "socket.io-client reconnects"  # as suites/test_browser.py records it


def _wait_s(conformance) -> float:
    return conformance.settings.latency_budget_ms / 1000 * 1.5 + 5.0


def _policy_window(policy) -> float:
    """As the suites' policy_window: every backoff at its maximum plus 2 s per attempt."""
    return sum(policy.bounds(n)[1] for n in range(1, policy.attempts + 1)) + 2.0 * policy.attempts


@contextlib.asynccontextmanager
async def _tab_behind_a_proxy(conformance, portal_browser, token: Callable[[], str]):
    """A Live page whose socket (not its REST) goes through a fault proxy; UNKNOWN if it never shows Live.
    ``token`` is called once the page is open, so a short-lived token is not spent on Chromium's start."""
    gateway = urlsplit(conformance.main.url)
    settings = conformance.settings
    async with FaultProxy(gateway.hostname, gateway.port) as proxy, portal_browser.launch() as browser:
        tab = await browser.tab(portal_browser.origin, profile="agent", name="tab behind the proxy")
        await tab.start(url=proxy.url_for("http"), token=token(), path=settings.socketio_path, rest_paths={},
                        policy=settings.reconnect_policy, label="tab behind the proxy", rest_url=conformance.main.url)
        if await tab.wait_state(["live", "refused"], LIVE_S) != "live":
            conformance.unknown(f"the page never showed Live within {LIVE_S:g} s (see CONN-1)")
        yield proxy, browser, tab


async def _shown(tab, marker: str) -> bool:
    return marker in json.dumps(await tab.events())


async def _real_client(tab) -> dict:
    """What socket.io-client itself holds: each connect's ``recovered``, the reconnect attempts, and the
    events it received before a CONNECT ack that never came (its receiveBuffer, which a refusal does not empty)."""
    return dict(await tab.page.evaluate(
        "() => ({connects: window.portal.connects, attempts: window.portal.attempts, disconnects: window.portal.disconnects,"
        " buffered: (window.portal.socket.receiveBuffer || []).map(a => JSON.stringify(a)),"
        " errors: window.portal.errors.map(e => e.data && e.data.code || e.message)})"))


async def _accepted_or_refused(tab, connects: int, timeout: float) -> str | None:
    """"live" once the page connected again (after ``connects`` connects), "refused" once its CONNECT was
    refused, None when neither within ``timeout``."""
    try:
        await tab.page.wait_for_function(
            "n => window.portal.connects.length > n || window.portal.state === 'refused'", arg=connects,
            timeout=timeout * 1000)
    except Exception:  # Playwright's TimeoutError: neither happened
        return None
    return "live" if len((await _real_client(tab))["connects"]) > connects else "refused"


@pytest.mark.requirement("RECON-4")
async def test_browser_short_disconnect_misses_nothing(portal_browser, conformance):
    """socket.io-client, cut from the gateway for about a second, shows every event published meanwhile."""
    async with conformance.scenario() as sc:
        tenant = sc.tenant("browser")
        async with _tab_behind_a_proxy(conformance, portal_browser, lambda: conformance.tokens.valid(tenant)) as (
                proxy, _, tab):
            wait = _wait_s(conformance)
            seen = await sc.publish_control(tenant, 0)  # the page learns its offset from an event
            if not await tab.wait_markers([seen.marker], wait):
                conformance.unknown("the page received nothing before the disconnect (see RECON-2)")
            proxy.cut()
            if await tab.wait_state(["lost"], 5.0) != "lost":
                conformance.unknown("the page did not show the disconnect within 5 s of the cut")
            gap = [await sc.publish_control(tenant, n) for n in range(1, 4)]
            proxy.pass_through()
            if await tab.wait_state(["live"], _policy_window(conformance.settings.reconnect_policy)) != "live":
                conformance.unknown("the page did not reconnect (see RECON-2)")
            after = await sc.publish_control(tenant, 9)
            if not await tab.wait_markers([after.marker], wait):
                conformance.unknown("the page did not show events even after reconnecting (see RECON-2)")
            missed = [p.seq for p in gap if not await _shown(tab, p.marker)]
            real = await _real_client(tab)
            conformance.record("socket.io-client", real)
            conformance.record(RECONNECTS, {"disconnects": real["disconnects"], "attempts": real["attempts"]})
            conformance.record("missed_during_gap", missed)
            await conformance.screenshot(tab, "after a short disconnect")
            conformance.fail([conformance.violation(
                "Events missed during a short disconnect", f"{len(missed)} of {len(gap)} events published during "
                "a sub-second disconnect never reached the page", {"missed_seqs": missed},
                severity="medium")] if missed else [])


@pytest.mark.requirement("AUTH-12")
async def test_browser_expired_token_does_not_resume_its_session(portal_browser, conformance):
    """The page's link drops while its token is valid; the token expires, an event is published, the link heals and
    socket.io-client reconnects by itself with the same token, its pid and offset: no resume, no missed events."""
    async with conformance.scenario() as sc:
        tenant = sc.tenant("browser")
        ttl = 4
        signed: dict[str, float] = {}

        def token() -> str:
            signed["exp_at_most"] = int(time.time() + ttl) + 1  # the signed exp, whole seconds, is at most this
            return conformance.tokens.valid(tenant, ttl_s=ttl)

        async with _tab_behind_a_proxy(conformance, portal_browser, token) as (proxy, _, tab):
            exp_at_most = signed["exp_at_most"]
            first = await sc.publish_control(tenant, 1)
            if not await tab.wait_markers([first.marker], _wait_s(conformance)):
                conformance.unknown("positive control: the page received nothing before the cut")
            proxy.cut()
            if await tab.wait_state(["lost"], 5.0) != "lost":
                conformance.unknown("the page did not show the disconnect within 5 s of the cut")
            if time.time() >= exp_at_most - 1:
                conformance.unknown("the token was about to expire before the link was cut (a slow machine?)")
            await asyncio.sleep(max(0.0, exp_at_most + 1.0 - time.time()))  # the token's life is the condition
            (control,) = await sc.connect(tenant)
            gap = await sc.publish_control(tenant, 2)
            if not await control.wait_for(lambda c: sc.delivered(c, gap), sc.grace_s):
                conformance.unknown("positive control: the event published during the cut reached no client")
            connects = len((await _real_client(tab))["connects"])
            proxy.pass_through()
            # Accepted (even for a moment: a gateway that ends expired connections says goodbye at once, and
            # socket.io-client then stays down) or refused (a CONNECT_ERROR ends the socket's reconnecting).
            state = await _accepted_or_refused(tab, connects, _policy_window(conformance.settings.reconnect_policy))
            await sc.publish_control(tenant, 3)
            await sc.settle()
            real = await _real_client(tab)
            shown = await _shown(tab, gap.marker)
            buffered = [b for b in real["buffered"] if gap.marker in b]
            conformance.record("socket.io-client", {**real, "state": state, "gap_event_shown": shown})
            conformance.record(RECONNECTS, {"disconnects": real["disconnects"], "attempts": real["attempts"]})
            await conformance.screenshot(tab, f"after the token expired: {state}")
            if state is None:
                conformance.unknown("the page neither reconnected nor was refused within the policy (see RECON-2)")
            violations = []
            if state == "live":
                recovered = any(c["recovered"] for c in real["connects"][connects:])
                violations.append(conformance.violation(
                    "Expired token resumed its session" if recovered else "Expired token accepted on reconnect",
                    "socket.io-client, reconnecting by itself with its expired token, pid and offset, was connected"
                    + (" and its session resumed" if recovered else ""),
                    {"connects": real["connects"][connects:], "disconnects": real["disconnects"]}))
            if shown or buffered:
                violations.append(conformance.violation(
                    "Events sent to an expired token", f"the event published after expiry was "
                    f"{'shown by the page' if shown else 'held by socket.io-client ahead of the refusal'}",
                    {"gap_event": gap.envelope}))
            conformance.fail(violations)
