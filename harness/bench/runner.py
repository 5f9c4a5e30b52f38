"""A bench run: every step against every target, alternating which goes first, then the reports.

Targets take turns step by step (A B, then B A, ...) on the same broker and machine, so a slow
minute on this shared machine lands on both columns rather than on one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from typing import Any, Callable

from realtime_conformance.harness.bench import report
from realtime_conformance.harness.bench.load import run_step
from realtime_conformance.harness.bench.options import BenchConfig
from realtime_conformance.harness.bench.targets import default_name, settings_from_ini, started
from realtime_conformance.harness import settings as _settings
from realtime_conformance.harness.settings import Settings


def _env_entries(env: dict[str, str] | Any) -> list[str]:
    """A resolved gateway env back as KEY=TEMPLATE entries (the defaults a removal must also remove)."""
    removed = [f"{k}=" for k in _settings.DEFAULT_GATEWAY_ENV if k not in env]
    return [*(f"{k}={v}" for k, v in env.items()), *removed]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def step_line(entry: dict[str, Any]) -> str:
    """One line per finished step for the terminal."""
    wrong = {k: entry[k] for k in ("lost", "duplicated", "cross_tenant", "out_of_order", "altered", "unrecognised")
             if entry.get(k)}
    gw = entry.get("gateway") or {}
    p = {k: ("-" if entry.get(k) is None else f"{entry[k]:.1f}") for k in ("p50_ms", "p99_ms", "max_ms")}
    return (f"bench {entry['target']:>14} {entry['label']:>14}: {entry.get('deliveries_per_s') or 0:>8.0f} deliv/s "
            f"p50 {p['p50_ms']} p99 {p['p99_ms']} max {p['max_ms']} ms; gateway CPU {gw.get('cpu_pct', '-')} %; "
            f"connect p99 {entry['connect'].get('p99_ms')} ms ({entry['connect'].get('failed')} failed)"
            + (f"; {len(entry['workers'])} workers" if entry.get("workers") else "")
            + ("" if entry.get("latency_trusted", True) else "; latencies UNTRUSTED")
            + (f"; WRONG {wrong}" if wrong else "") + ("" if entry["meets_budget"] else "; over budget"))


async def _run_distributed(targets: list[Any], config: BenchConfig, steps: list[dict[str, Any]],
                           say: Callable[[str], None]) -> None:
    """Every step over one Locust master and its workers, started once and reaped at the end."""
    from realtime_conformance.harness.bench import distributed
    from realtime_conformance.harness.bench.fleet import Fleet

    host, port = config.master_bind
    fleet = Fleet(config.workers, host, port, start_workers=config.worker_start == "local", say=say)
    try:
        async with fleet:
            say(f"bench workers: {len(fleet.joined)} joined the Locust master on {host}:{fleet.port} "
                f"(clock {config.clock})")
            for index, step in enumerate(config.steps):
                for target in (targets if index % 2 == 0 else targets[::-1]):
                    entry = await distributed.run_step(fleet, target, step, config, index)
                    steps.append(entry)
                    say(step_line(entry))
    finally:
        fleet.reap()  # also when the loop was interrupted before the fleet could close itself


def run(settings: Settings, config: BenchConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the configured steps against the target (and the compared one); write and return bench.json."""
    named = [(config.name or default_name(settings), settings)]
    if config.compare is not None:
        other = settings_from_ini(config.compare)
        if config.compare_env:
            other = dataclasses.replace(other, gateway_env=_settings._parse_env(
                _settings.BY_NAME["gateway_env"], [*_env_entries(other.gateway_env), *config.compare_env]))
        name = config.compare.parent.name or default_name(other)
        named.append((name if name != named[0][0] else f"{name}-2", other))
    started_at = _now()
    steps: list[dict[str, Any]] = []
    with started(named) as targets:
        say("bench targets: " + ", ".join(f"{t.name} at {t.url}" for t in targets))
        if config.workers:
            asyncio.run(_run_distributed(targets, config, steps, say))
        else:
            for index, step in enumerate(config.steps):
                for target in (targets if index % 2 == 0 else targets[::-1]):
                    entry = asyncio.run(run_step(target, step, config, index))
                    steps.append(entry)
                    say(step_line(entry))
        described = [t.describe() for t in targets]
    result = report.assemble({**config.describe()}, described, steps, config.budget_ms, started_at, _now())
    paths = report.write(result, config.report_dir)
    say(result["top_line"])
    for kind, path in paths.items():
        say(f"bench {kind}: {path}")
    return result
