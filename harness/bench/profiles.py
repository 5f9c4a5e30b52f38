"""Named step lists: what ``--bench-profile`` means, so a run is one word and a documented command.

A step is ``CLIENTS/TENANTS@EVENTS_PER_S``: that many Socket.IO clients, spread evenly over that
many tenants (clients / tenants tabs each, sharing one token as browser tabs do), while events are
published at that rate, each to one tenant in turn, so each event fans out to one tenant's tabs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

STEP_PATTERN = re.compile(r"^\s*(?P<clients>\d+)\s*/\s*(?P<tenants>\d+)\s*@\s*(?P<rate>\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Step:
    """One load level: clients over tenants, and the publish rate."""

    clients: int
    tenants: int
    events_per_s: float

    @property
    def tabs(self) -> int:
        """Clients per tenant (the tenant's open tabs)."""
        return self.clients // self.tenants

    @property
    def label(self) -> str:
        return f"{self.clients}/{self.tenants}@{self.events_per_s:g}"

    @property
    def deliveries_per_s(self) -> float:
        """What the step asks of the gateway: every event reaches each of its tenant's tabs."""
        return self.events_per_s * self.tabs


class StepError(ValueError):
    """A step that does not parse: ``part`` is the text, ``why`` what is wrong and how to write it."""

    def __init__(self, part: str, why: str) -> None:
        super().__init__(f"{part!r} {why}")
        self.part, self.why = part, why


def parse_step(text: str) -> Step:
    """``500/50@1000`` as a Step; StepError saying what is wrong otherwise."""
    part = text.strip()
    m = STEP_PATTERN.match(text)
    if not m:
        raise StepError(part, "is not CLIENTS/TENANTS@EVENTS_PER_S, e.g. 500/50@1000")
    clients, tenants, rate = int(m["clients"]), int(m["tenants"]), float(m["rate"])
    if tenants < 1 or clients < tenants:
        raise StepError(part, "needs at least one client per tenant (1 <= TENANTS <= CLIENTS)")
    if clients % tenants:
        raise StepError(part, f"spreads {clients} clients unevenly over {tenants} tenants; make CLIENTS a "
                        f"multiple of TENANTS, e.g. {max(tenants, clients - clients % tenants)}/{tenants}@{rate:g}")
    if rate <= 0:
        raise StepError(part, "needs a publish rate above 0 events/s")
    return Step(clients, tenants, rate)


def parse_steps(text: str) -> tuple[Step, ...]:
    """A comma list of steps, in the order they run."""
    steps = tuple(parse_step(part) for part in str(text).split(",") if part.strip())
    if not steps:
        raise StepError(str(text), "lists no step; give e.g. 200/20@100,500/50@1000")
    return steps


@dataclass(frozen=True)
class Profile:
    """Defaults a profile gives the bench options (each still overridable on its own)."""

    steps: str
    step_s: float
    drain_s: float
    why: str


PROFILES: Mapping[str, Profile] = {
    "ci": Profile("50/10@50,200/20@200", 4.0, 10.0,
                  "CI smoke: about a minute, one step at 200 clients; records numbers, fails on nothing slow"),
    "full": Profile("100/10@100,500/50@100,500/50@300,500/50@1000,1000/100@300,2000/200@100", 10.0, 20.0,
                    "the documented full bench: fan-out and rate up to 10,000 deliveries/s and 2,000 clients"),
    "goal": Profile("500/50@1000", 20.0, 20.0,
                    "the reference gateway's goal: 1,000 events/s to 500 clients (50 tenants x 10 tabs)"),
    "scale": Profile("500/50@100,1000/100@100,2000/200@100,3000/300@100", 5.0, 10.0,
                     "clients at scale: what one harness process can hold connected and fed"),
}
