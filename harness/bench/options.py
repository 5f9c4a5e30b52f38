"""The bench's settings: each a command-line flag, an ini key and an RTC_ env var, like the harness's.

Same precedence (command line, environment, ini, then the profile's or the built-in default) and
the same kind of error: ``pytest.UsageError`` naming the three spellings and the fix. Resolved
only when the bench runs, so a conformance run never pays for (or trips over) them.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pytest

from realtime_conformance import contract
from realtime_conformance.harness.bench.profiles import PROFILES, Step, StepError, parse_steps
from realtime_conformance.harness.settings import ENV_PREFIX, Option, _fail, _parse_env, _parse_number

BENCH_OPTIONS: tuple[Option, ...] = (
    Option("bench_profile", "Named bench profile: its steps, step length and drain window (docs/bench.md).",
           "full", choices=tuple(PROFILES)),
    Option("bench_steps", "Steps as a comma list of CLIENTS/TENANTS@EVENTS_PER_S, e.g. 200/20@100,500/50@1000 "
           "(replaces the profile's)."),
    Option("bench_step_s", "Seconds each step publishes for (default: the profile's).", kind="float"),
    Option("bench_drain_s", "Seconds a step waits after its last publish for deliveries still on their way; what "
           "has not arrived by then counts as lost (default: the profile's).", kind="float"),
    Option("bench_mix", "Payload mix as TYPE=WEIGHT, comma list of the contract's event types, e.g. "
           "new_message=6,status_update=2,conversation_update=1,metrics_update=1.", "new_message=1"),
    Option("bench_budget_ms", "p99 a step must stay within (with no correctness violation) to meet the budget.",
           100.0, kind="float"),
    Option("bench_compare", "A second target, judged beside the first step by step: the path of its pytest.ini "
           "(or of the folder holding it), e.g. examples/node-gateway."),
    Option("bench_compare_env", "Environment entries (KEY=TEMPLATE, comma list) added to the second target's own, "
           "e.g. ENGINE_PING_INTERVAL_MS=25000,ENGINE_PING_TIMEOUT_MS=20000 to match --gateway-env on the first.", ""),
    Option("bench_name", "Name of the first target in the report (default: 'reference' for the reference "
           "gateway, else the command's program)."),
    Option("bench_report_dir", "Where bench.json and bench.html are written.", "reports/bench"),
    Option("bench_client", "The bench's Socket.IO client: 'wire' (Engine.IO/Socket.IO frames read directly, one shared "
           "aiohttp session: the cheapest per delivery) or 'socketio' (python-socketio's AsyncClient, one per tab).",
           "wire", choices=("wire", "socketio")),
    Option("bench_connect_concurrency", "Client connects in flight at once.", 100, kind="int"),
    Option("bench_workers", "Locust workers that run the clients (0: in this process, as without Locust). Each "
           "step's clients are spread over them; needs the bench extra (locust).", 0, kind="int"),
    Option("bench_worker_start", "'local': the bench starts the workers on this machine; 'none': it starts none "
           "and waits for --bench-workers of them to join (realtime-conformance bench-worker --master-host H "
           "--master-port P on each machine).", "local", choices=("local", "none")),
    Option("bench_master_bind", "HOST:PORT the Locust master listens on for its workers (port 0: a free one). "
           "Workers on other machines need a reachable host, e.g. 0.0.0.0:5557.", "127.0.0.1:0"),
    Option("bench_clock", "'shared': workers read this machine's monotonic clock (only true on this machine); "
           "'measured': each worker's clock offset and round trip are measured before and after every step and "
           "used to correct its stamps, as across machines (forces that path here). Default: shared for local "
           "workers, measured for workers that join.", choices=("shared", "measured")),
    Option("bench_publishers", "Publisher processes per step, each sending its share of the tenants (one sustains "
           "a few thousand events/s here; see docs/bench.md).", 1, kind="int"),
)
BY_NAME = {o.name: o for o in BENCH_OPTIONS}


@dataclass(frozen=True)
class BenchConfig:
    """Validated bench settings; build with ``resolve``."""

    profile: str
    steps: tuple[Step, ...]
    step_s: float
    drain_s: float
    mix: tuple[tuple[str, int], ...]
    budget_ms: float
    compare: Path | None
    compare_env: tuple[str, ...]
    name: str | None
    report_dir: Path
    connect_concurrency: int
    client: str = "wire"
    workers: int = 0
    worker_start: str = "local"
    master_bind: tuple[str, int] = ("127.0.0.1", 0)
    clock: str = "shared"
    publishers: int = 1
    sources: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The configuration as the report shows it."""
        return {"profile": self.profile, "steps": [s.label for s in self.steps], "step_s": self.step_s,
                "drain_s": self.drain_s, "mix": dict(self.mix), "budget_ms": self.budget_ms,
                "compare": str(self.compare) if self.compare else None, "compare_env": list(self.compare_env),
                "connect_concurrency": self.connect_concurrency, "client": self.client,
                "workers": self.workers, "worker_start": self.worker_start if self.workers else None,
                "clock": self.clock if self.workers else None, "publishers": self.publishers}


def add_options(parser: pytest.Parser) -> None:
    """Register the bench options as flags in their own group and as ini keys."""
    group = parser.getgroup("realtime-conformance-bench", "realtime conformance bench (realtime-conformance bench)")
    for opt in BENCH_OPTIONS:
        group.addoption(opt.flag, action="store", default=None, dest=opt.name, help=f"{opt.help} [env {opt.env}]")
        parser.addini(opt.name, help=opt.help, type="string", default=None)


def _raw(config: pytest.Config, environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in BENCH_OPTIONS:
        cli = config.getoption(opt.name, default=None)
        ini = config.getini(opt.name)
        if cli not in (None, ""):
            raw[opt.name], sources[opt.name] = cli, "command line"
        elif environ.get(opt.env, "") != "":
            raw[opt.name], sources[opt.name] = environ[opt.env], "environment"
        elif ini not in (None, ""):
            raw[opt.name], sources[opt.name] = ini, "ini"
        else:
            raw[opt.name], sources[opt.name] = opt.default, "default"
    return raw, sources


def parse_mix(opt: Option, value: Any) -> tuple[tuple[str, int], ...]:
    """``new_message=6,status_update=2`` as ((type, weight), ...); known types, whole weights >= 1."""
    known = contract.event_types()
    mix: dict[str, int] = {}
    for part in str(value).split(","):
        if not part.strip():
            continue
        kind, sep, weight = part.partition("=")
        kind = kind.strip()
        if kind not in known:
            raise _fail(opt, part.strip(), f"names no event type of the contract; choose from: {', '.join(known)}")
        try:
            n = int(weight) if sep else 1
        except ValueError:
            raise _fail(opt, part.strip(), "has a weight that is not a whole number; write TYPE=WEIGHT, "
                        "e.g. new_message=6") from None
        if n < 1:
            raise _fail(opt, part.strip(), "needs a weight of at least 1 (leave a type out to send none of it)")
        if kind in mix:
            raise _fail(opt, part.strip(), f"names {kind} twice; give each type once")
        mix[kind] = n
    if not mix:
        raise _fail(opt, value, "is empty; give at least one TYPE=WEIGHT, e.g. new_message=1")
    return tuple(mix.items())


def _compare_path(config: pytest.Config, opt: Option, value: Any, source: str) -> Path | None:
    """The second target's ini file; a folder means its pytest.ini; relative to the ini's folder when set there."""
    if value in (None, ""):
        return None
    base = Path(config.inipath).parent if source == "ini" and config.inipath else Path(config.invocation_params.dir)
    path = (base / Path(str(value)).expanduser()).resolve()
    if path.is_dir():
        path = path / "pytest.ini"
    if not path.is_file():
        raise _fail(opt, str(value), f"is not an ini file nor a folder holding pytest.ini ({path}); give the "
                    "second target's config, e.g. examples/node-gateway")
    return path


def _choice(opt: Option, value: Any) -> str:
    text = str(value).strip()
    if opt.choices and text not in opt.choices:
        raise _fail(opt, text, f"is not a valid choice; choose from: {', '.join(opt.choices)}")
    return text


def _compare_env(opt: Option, value: Any) -> tuple[str, ...]:
    """KEY=TEMPLATE entries, checked as --gateway-env checks its own."""
    entries = tuple(e.strip() for e in str(value or "").split(",") if e.strip())
    try:
        _parse_env(opt, list(entries))
    except pytest.UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    return entries


def _bind(opt: Option, value: Any) -> tuple[str, int]:
    host, sep, port = str(value).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise _fail(opt, value, "is not HOST:PORT; give e.g. 127.0.0.1:0 (a free port) or 0.0.0.0:5557")
    return host, int(port)


def _fleet(raw: dict[str, Any], steps: tuple[Step, ...], client: str) -> dict[str, Any]:
    """The distributed options, checked against each other and the steps."""
    o = BY_NAME
    workers = _parse_number(o["bench_workers"], raw["bench_workers"], int, 0)
    publishers = _parse_number(o["bench_publishers"], raw["bench_publishers"], int, 1)
    start = _choice(o["bench_worker_start"], raw["bench_worker_start"])
    bind = _bind(o["bench_master_bind"], raw["bench_master_bind"])
    clock = raw["bench_clock"]
    clock = _choice(o["bench_clock"], clock) if clock not in (None, "") \
        else ("shared" if start == "local" else "measured")
    if workers:
        if importlib.util.find_spec("locust") is None:  # never imported here: it would gevent-patch this process
            raise _fail(o["bench_workers"], workers, "needs Locust: pip install 'realtime-conformance[bench]'")
        few = [s.label for s in steps if s.clients < workers]
        if few:
            raise _fail(o["bench_workers"], workers, f"is more than the clients of step {few[0]}; give at most "
                        f"{min(s.clients for s in steps)} workers or bigger steps")
        if start == "none" and clock == "shared":
            raise _fail(o["bench_clock"], clock, "cannot hold for workers that join from elsewhere: their "
                        "clocks are measured; leave it unset or give 'measured'")
    elif start != "local" or raw["bench_clock"] not in (None, ""):
        raise _fail(o["bench_workers"], workers, f"is 0, so {o['bench_worker_start'].flag} and "
                    f"{o['bench_clock'].flag} have no workers to apply to; give --bench-workers N")
    few = [s.label for s in steps if s.tenants < publishers]
    if few:
        raise _fail(o["bench_publishers"], publishers, f"is more than the tenants of step {few[0]} (publishers "
                    "split the tenants); give fewer publishers or more tenants")
    return {"workers": workers, "worker_start": start, "master_bind": bind, "clock": clock, "publishers": publishers}


def resolve(config: pytest.Config, environ: Mapping[str, str] | None = None) -> BenchConfig:
    """Validate the bench options (profile defaults filled in), or raise pytest.UsageError."""
    environ = os.environ if environ is None else environ
    raw, sources = _raw(config, environ)
    o = BY_NAME
    profile_name = str(raw["bench_profile"]).strip()
    if profile_name not in PROFILES:
        raise _fail(o["bench_profile"], profile_name, f"is not a bench profile; choose from: {', '.join(PROFILES)}")
    profile = PROFILES[profile_name]
    try:
        steps = parse_steps(raw["bench_steps"] or profile.steps)
    except StepError as exc:
        raise _fail(o["bench_steps"], exc.part, exc.why) from None
    step_s = _parse_number(o["bench_step_s"], raw["bench_step_s"] if raw["bench_step_s"] is not None
                           else profile.step_s, float, 0.5)
    drain_s = _parse_number(o["bench_drain_s"], raw["bench_drain_s"] if raw["bench_drain_s"] is not None
                            else profile.drain_s, float, 1)
    budget = _parse_number(o["bench_budget_ms"], raw["bench_budget_ms"], float, 0.1)
    concurrency = _parse_number(o["bench_connect_concurrency"], raw["bench_connect_concurrency"], int, 1)
    for step in steps:
        if step.events_per_s * step_s < step.tenants:
            raise _fail(o["bench_steps"], step.label, f"publishes {step.events_per_s * step_s:g} events in "
                        f"{step_s:g} s, fewer than its {step.tenants} tenants, so some tenants get none; raise "
                        f"the rate or {o['bench_step_s'].flag}")
    name = str(raw["bench_name"]).strip() if raw["bench_name"] else None
    client = _choice(o["bench_client"], raw["bench_client"])
    report_dir = Path(str(raw["bench_report_dir"])).expanduser()
    if not report_dir.is_absolute():
        report_dir = Path(config.rootpath) / report_dir
    return BenchConfig(
        profile=profile_name, steps=steps, step_s=step_s, drain_s=drain_s,
        mix=parse_mix(o["bench_mix"], raw["bench_mix"]), budget_ms=budget,
        compare=_compare_path(config, o["bench_compare"], raw["bench_compare"], sources["bench_compare"]),
        compare_env=_compare_env(o["bench_compare_env"], raw["bench_compare_env"]),
        name=name, report_dir=report_dir, connect_concurrency=concurrency, client=client,
        **_fleet(raw, steps, client), sources=sources)


__all__ = ["BENCH_OPTIONS", "BenchConfig", "ENV_PREFIX", "add_options", "parse_mix", "resolve"]
