"""The bench's options: three spellings, profile defaults, and bad values stop the run at start
with a message naming the option and the fix (in-process pytester runs, as test_settings does)."""

from __future__ import annotations

import pytest

from realtime_conformance.harness import plugin
from realtime_conformance.harness.bench import options
from realtime_conformance.harness.bench.profiles import PROFILES, Step, StepError, parse_step, parse_steps

pytest_plugins = ["pytester"]


def _bench(pytester: pytest.Pytester, *args: str) -> options.BenchConfig:
    config = pytester.parseconfigure("-m", "bench", *args)
    return config.stash[plugin.BENCH_KEY]


def _usage_error(pytester: pytest.Pytester, *args: str) -> str:
    with pytest.raises(pytest.UsageError) as info:
        pytester.parseconfigure("-m", "bench", *args)
    return str(info.value)


def test_defaults_come_from_the_profile(pytester, clean_env):
    config = _bench(pytester, "--bench-profile", "ci")
    profile = PROFILES["ci"]
    assert config.steps == parse_steps(profile.steps)
    assert (config.step_s, config.drain_s, config.budget_ms) == (profile.step_s, profile.drain_s, 100.0)
    assert config.mix == (("new_message", 1),)
    assert any(s.clients >= 200 for s in config.steps), "CI's smoke needs a step at 200 clients or more"


@pytest.mark.parametrize("how", ["cli", "env", "ini"])
def test_each_spelling_sets_steps_and_mix(pytester, clean_env, how):
    values = {"bench_steps": "20/4@10,40/4@20", "bench_mix": "new_message=3,status_update=1", "bench_step_s": "2"}
    args: list[str] = []
    if how == "cli":
        for name, value in values.items():
            args.append(f"{options.BY_NAME[name].flag}={value}")
    elif how == "env":
        for name, value in values.items():
            clean_env.setenv(options.BY_NAME[name].env, value)
    else:
        pytester.makeini("[pytest]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    config = _bench(pytester, *args)
    assert [s.label for s in config.steps] == ["20/4@10", "40/4@20"]
    assert config.mix == (("new_message", 3), ("status_update", 1))
    assert config.step_s == 2.0
    assert config.sources["bench_steps"] == {"cli": "command line", "env": "environment", "ini": "ini"}[how]


def test_command_line_beats_environment(pytester, clean_env):
    clean_env.setenv("RTC_BENCH_BUDGET_MS", "50")
    assert _bench(pytester, "--bench-budget-ms", "10").budget_ms == 10.0


def test_not_validated_outside_the_bench(pytester, clean_env):
    clean_env.setenv("RTC_BENCH_STEPS", "nonsense")
    config = pytester.parseconfigure()
    assert plugin.BENCH_KEY not in config.stash


@pytest.mark.parametrize("args, expected", [
    (["--bench-steps", "500/3@10"], "--bench-steps (ini 'bench_steps', env RTC_BENCH_STEPS): '500/3@10' spreads 500 "
     "clients unevenly over 3 tenants; make CLIENTS a multiple of TENANTS, e.g. 498/3@10"),
    (["--bench-steps", "500x50"], "'500x50' is not CLIENTS/TENANTS@EVENTS_PER_S, e.g. 500/50@1000"),
    (["--bench-steps", "5/10@10"], "needs at least one client per tenant"),
    (["--bench-steps", "50/10@1", "--bench-step-s", "2"], "publishes 2 events in 2 s, fewer than its 10 tenants"),
    (["--bench-profile", "huge"], "'huge' is not a bench profile; choose from: ci, full, goal, scale"),
    (["--bench-mix", "new_mesage=1"], "'new_mesage=1' names no event type of the contract"),
    (["--bench-mix", "new_message=0"], "needs a weight of at least 1"),
    (["--bench-mix", "new_message=x"], "weight that is not a whole number"),
    (["--bench-budget-ms", "fast"], "--bench-budget-ms (ini 'bench_budget_ms', env RTC_BENCH_BUDGET_MS): 'fast' is not "
     "a number"),
    (["--bench-step-s", "0.1"], "must be at least 0.5"),
    (["--bench-connect-concurrency", "0"], "must be at least 1"),
    (["--bench-compare", "no/such/folder"], "is not an ini file nor a folder holding pytest.ini"),
    (["--bench-compare-env", "PING 25"], "--bench-compare-env (ini 'bench_compare_env', env RTC_BENCH_COMPARE_ENV): "
     "'PING 25' is not KEY=TEMPLATE"),
    (["--bench-compare-env", "X={nope}"], "uses the unknown placeholder {nope}"),
    (["--bench-workers", "-1"], "must be at least 0"),
    (["--bench-workers", "3", "--bench-steps", "2/1@10"], "is more than the clients of step 2/1@10; give at most 2"),
    (["--bench-clock", "measured"], "is 0, so --bench-worker-start and --bench-clock have no workers to apply to"),
    (["--bench-workers", "2", "--bench-worker-start", "none", "--bench-clock", "shared"],
     "cannot hold for workers that join from elsewhere"),
    (["--bench-workers", "2", "--bench-clock", "ntp"], "'ntp' is not a valid choice; choose from: shared, measured"),
    (["--bench-workers", "2", "--bench-master-bind", "localhost"], "is not HOST:PORT"),
    (["--bench-publishers", "3", "--bench-steps", "4/2@10"], "is more than the tenants of step 4/2@10"),
])
def test_bad_values_name_the_option_and_the_fix(pytester, clean_env, args, expected):
    assert expected in _usage_error(pytester, *args)


def test_compare_takes_a_folder_holding_pytest_ini(pytester, clean_env):
    other = pytester.mkdir("other")
    (other / "pytest.ini").write_text("[pytest]\ngateway_cmd = node src/index.js\n")
    assert _bench(pytester, "--bench-compare", "other").compare == other / "pytest.ini"


def test_step_arithmetic():
    step = parse_step(" 500 / 50 @ 1000 ")
    assert step == Step(500, 50, 1000.0)
    assert (step.tabs, step.label, step.deliveries_per_s) == (10, "500/50@1000", 10000.0)
    with pytest.raises(StepError):
        parse_steps(" , ")


def test_bench_command_runs_the_bench_module_only(tmp_path):
    from realtime_conformance.harness import cli

    args = cli.bench_args(["--bench-profile", "ci"], cwd=tmp_path)
    assert cli.BENCH_MODULE in args and cli.SUITES not in args
    assert args[args.index("-m") + 1] == "bench" and args[-2:] == ["--bench-profile", "ci"]
    assert cli.BENCH_MODULE not in cli.pytest_args([], cwd=tmp_path)  # never part of the conformance run


def test_client_choice(pytester, clean_env):
    assert _bench(pytester).client == "wire"
    assert _bench(pytester, "--bench-client", "socketio").client == "socketio"
    assert "'aiohttp' is not a valid choice; choose from: wire, socketio" in _usage_error(
        pytester, "--bench-client", "aiohttp")


def test_worker_options(pytester, clean_env):
    """Workers: the clock is shared for local ones and measured for ones that join, unless told."""
    assert (_bench(pytester).workers, _bench(pytester).publishers) == (0, 1)
    local = _bench(pytester, "--bench-workers", "2")
    assert (local.workers, local.worker_start, local.clock, local.master_bind) == (2, "local", "shared",
                                                                                   ("127.0.0.1", 0))
    joined = _bench(pytester, "--bench-workers", "2", "--bench-worker-start", "none", "--bench-master-bind",
                    "0.0.0.0:5557")
    assert (joined.clock, joined.master_bind) == ("measured", ("0.0.0.0", 5557))
    assert _bench(pytester, "--bench-workers", "2", "--bench-clock", "measured").clock == "measured"
    assert _bench(pytester, "--bench-workers", "2").describe()["workers"] == 2


def test_bench_worker_command_needs_the_master(capsys):
    from realtime_conformance.harness import cli

    assert cli.main(["bench-worker"]) == 2
    assert "--master-host HOST --master-port PORT" in capsys.readouterr().err
