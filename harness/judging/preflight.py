"""Which event types does this target deliver, and in what form? Learnt once per run.

Checks need events they do not judge: positive controls, settle barriers, probes after a
fault. If those were always of one type, a gateway that breaks that one type would fail
checks that have nothing to do with it. So before the suites run, one fresh client of a
fresh tenant is sent one plain sample of every type; the types that arrive recognisably
(intact, or reshaped but carrying the harness's marker) become the control types, in a
fixed order of preference. The report shows the profile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from realtime_conformance import contract
from realtime_conformance.harness import samples
from realtime_conformance.harness.judging.checks import canonical
from realtime_conformance.harness.judging.failures import UnknownEvidence
from realtime_conformance.harness.wire.scenario import CONTROL_PREFERENCE

if TYPE_CHECKING:
    from realtime_conformance.harness.providers.target import Instance

USABLE = ("intact", "reshaped")


async def delivery_profile(instance: "Instance") -> tuple[dict[str, str], str]:
    """Per event type: ``intact``, ``reshaped``, ``renamed`` or ``not delivered``; and a note."""
    async with instance.scenario(control_types=()) as sc:
        tenant = sc.tenant("preflight")
        try:
            (client,) = await sc.connect(tenant)
        except UnknownEvidence as exc:
            return {}, f"a client with a valid token could not connect ({exc.reason}): see CONN-1 and AUTH-1"
        published = {t: await sc.publish(tenant, t, samples.sample(t, 0)) for t in contract.event_types()}
        await sc.wait_delivered([client], list(published.values()), sc.grace_s)
        profile = {}
        for event_type, p in published.items():
            got = [r for r in client.received if sc.seq_of(r, r.data) == p.seq]
            if not got:
                profile[event_type] = "not delivered"
            elif got[0].event != event_type:
                profile[event_type] = "renamed"
            else:
                profile[event_type] = "intact" if canonical(got[0].data) == p.key else "reshaped"
        return profile, ""


def control_types(profile: dict[str, str]) -> tuple[str, ...]:
    """The types checks may use as controls, most preferred first."""
    return tuple(t for t in CONTROL_PREFERENCE if profile.get(t) in USABLE)
