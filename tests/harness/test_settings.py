"""Every harness option works spelled three ways, with one precedence, and bad values fail at start.

Inner runs use pytester in-process. A wrong value must stop the run before any test with
``pytest.UsageError`` and a message that names the option's three spellings and the fix; the
messages are matched exactly, as pytest-httpx's own tests do.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from realtime_conformance import contract
from realtime_conformance.harness import plugin
from realtime_conformance.harness.wire.portal import ReconnectPolicy
from realtime_conformance.harness.judging.catalogue import ACTIVE, AREAS, CATALOGUE_VERSION, CHANGELOG
from realtime_conformance.harness import settings as _settings_module
from realtime_conformance.harness.settings import BY_NAME, DEFAULT_GATEWAY_ENV, OPTIONS, Settings, header_lines

pytest_plugins = ["pytester"]

SECRET = "s3cret-" + "x" * 33  # 40 bytes: enough for HS256, not for HS384/HS512
SECRET_64 = "s3cret-" + "x" * 57  # 64 bytes: enough for every HMAC algorithm
QUEUE = contract.default_queue()
HERE = str(Path(__file__).resolve().parent)  # an existing absolute folder


def _settings_of(pytester: pytest.Pytester, *args: str) -> Settings:
    config = pytester.parseconfigure(*args)
    return config.stash[plugin.SETTINGS_KEY]


def _spell(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str,
           values: dict[str, str | list[str] | bool]) -> list[str]:
    """Give ``values`` (option name -> raw value) in one spelling; returns the command-line args."""
    args: list[str] = []
    ini_lines = ["[pytest]"]
    for name, value in values.items():
        opt = BY_NAME[name]
        if how == "cli":
            if value is True:
                args.append(opt.flag)
            elif isinstance(value, list):
                for v in value:
                    args.append(f"{opt.flag}={v}")
            else:
                args.append(f"{opt.flag}={value}")
        elif how == "env":
            text = "true" if value is True else ";".join(value) if isinstance(value, list) else value
            monkeypatch.setenv(opt.env, text)
        else:
            if value is True:
                ini_lines.append(f"{name} = true")
            elif isinstance(value, list):
                ini_lines.append(f"{name} =")
                ini_lines += [f"    {v}" for v in value]
            else:
                ini_lines.append(f"{name} = {value}")
    if how == "ini":
        pytester.makeini("\n".join(ini_lines) + "\n")
    return args


# (option, raw value, other options needed in the same spelling, getter, expected)
CASES: list[tuple[str, Any, dict[str, Any], Callable[[Settings], Any], Any]] = [
    ("gateway_url", "http://127.0.0.1:3999", {"jwt_secret": SECRET}, lambda s: (s.gateway_url, s.target_kind), ("http://127.0.0.1:3999", "url")),
    ("gateway_cmd", "my-gateway --port 1", {}, lambda s: (s.gateway_cmd, s.command, s.target_kind), ("my-gateway --port 1", "my-gateway --port 1", "process")),
    ("gateway_image", "example/gw:1", {}, lambda s: (s.gateway_image, s.target_kind, s.broker), ("example/gw:1", "image", "container")),
    ("broker", "process", {}, lambda s: s.broker, "process"),
    ("gateway_replicas", "2", {}, lambda s: (s.gateway_replicas, s.cluster), (2, True)),
    ("redis_url", "redis://:pw@127.0.0.1:6390/1", {}, lambda s: (s.redis_url, s.redis), ("redis://:pw@127.0.0.1:6390/1", "external")),
    ("redis", "container", {}, lambda s: s.redis, "container"),
    ("redis_image", "example/redis:7", {}, lambda s: s.redis_image, "example/redis:7"),
    ("gateway_cwd", HERE, {}, lambda s: s.gateway_cwd, HERE),
    ("amqp_url", "amqp://u:p@127.0.0.1:5673/", {}, lambda s: (s.amqp_url, s.broker), ("amqp://u:p@127.0.0.1:5673/", "external")),
    ("rabbitmq_image", "rabbitmq:3.13", {}, lambda s: s.rabbitmq_image, "rabbitmq:3.13"),
    ("queue", "my.queue", {}, lambda s: s.queue, "my.queue"),
    ("jwt_secret", SECRET_64, {}, lambda s: s.jwt_secret, SECRET_64),
    ("jwt_algorithm", "HS512", {}, lambda s: s.jwt_algorithm, "HS512"),
    ("tenant_claim", "org", {}, lambda s: s.tenant_claim, "org"),
    ("extra_claims", '{"aud": "agent-portal"}', {}, lambda s: dict(s.extra_claims), {"aud": "agent-portal"}),
    ("socketio_path", "/rt", {}, lambda s: s.socketio_path, "/rt/"),
    ("rest_paths", '{"stats": "/s"}', {}, lambda s: s.rest_paths["stats"], "/s"),
    ("gateway_env", ["EXTRA=1", "MYPORT={port}", "PING_TIMEOUT="], {},
     lambda s: dict(s.gateway_env),
     {**{k: v for k, v in DEFAULT_GATEWAY_ENV.items() if k != "PING_TIMEOUT"}, "EXTRA": "1", "MYPORT": "{port}"}),
    ("gateway_startup_timeout", "7.5", {}, lambda s: s.gateway_startup_timeout, 7.5),
    ("stop_grace_s", "30", {}, lambda s: s.stop_grace_s, 30.0),
    ("silent_close_s", "45", {}, lambda s: s.silent_close_s, 45.0),
    ("lacks", "rest,polling", {}, lambda s: s.lacks, frozenset({"rest", "polling"})),
    ("allowed_origins", "http://a.example,http://b.example", {}, lambda s: s.allowed_origins, ("http://a.example", "http://b.example")),
    ("forbidden_origins", "http://c.example", {}, lambda s: (s.forbidden_origins[0], "https://a.example" in s.forbidden_origins),
     ("http://c.example", True)),  # added to the generated look-alikes
    ("latency_budget_ms", "250", {}, lambda s: s.latency_budget_ms, 250.0),
    ("reconnect_policy", "attempts=3,delay=500,max=2000,jitter=0", {}, lambda s: s.reconnect_policy,
     ReconnectPolicy(attempts=3, delay=0.5, delay_max=2.0, randomization=0.0)),
    ("idle_window_s", "12", {}, lambda s: s.idle_window_s, 12.0),
    ("gate_level", "release", {}, lambda s: s.gate_level, "release"),
    ("examples", "5", {}, lambda s: s.examples, 5),
    ("conformance_strict", True, {}, lambda s: s.strict, True),
    ("requirements", "DLV-1,ISO-1", {}, lambda s: s.requirements, frozenset({"DLV-1", "ISO-1"})),
    ("report_dir", "out", {}, lambda s: s.report_dir, "out"),
    ("waivers", "waivers.yaml", {}, lambda s: [(w.id, w.reason) for w in s.waivers.entries], [("DLV-3", "slow")]),
    ("catalogue_version", CATALOGUE_VERSION, {}, lambda s: s.catalogue_version, CATALOGUE_VERSION),
    ("browser", "required", {}, lambda s: s.browser, "required"),
    ("browser_path", "/opt/chrome/chrome", {}, lambda s: s.browser_path, "/opt/chrome/chrome"),
    ("browser_origin", "http://localhost:3014/", {}, lambda s: s.browser_origin, "http://localhost:3014"),
]

SOURCE = {"cli": "command line", "env": "environment", "ini": "ini"}


def test_an_area_wildcard_selects_the_area() -> None:
    from realtime_conformance.harness.settings import _expand_areas

    rob = [r.id for r in ACTIVE if r.area == "ROB"]
    assert _expand_areas(BY_NAME["requirements"], ("ROB-*", "DLV-1")) == [*rob, "DLV-1"]
    assert rob[:3] == ["ROB-1", "ROB-2", "ROB-3"]


# Options that can be given together; three groups because a run has one target.
GROUPS = {
    "url-target": [c for c in CASES if c[0] not in ("gateway_cmd", "gateway_image", "broker", "gateway_cwd",
                                                    "gateway_replicas", "redis_url", "redis", "redis_image",
                                                    "stop_grace_s", "silent_close_s")],
    "cmd-target": [c for c in CASES if c[0] in ("gateway_cmd", "broker", "gateway_cwd", "gateway_replicas", "redis_url",
                                                "stop_grace_s", "silent_close_s")],
    # A Redis the harness starts and a Redis URL exclude each other: the Redis kind goes with the image.
    "image-target": [c for c in CASES if c[0] in ("gateway_image", "redis", "redis_image")],
}


def test_groups_cover_every_option() -> None:
    assert sorted(c[0] for cases in GROUPS.values() for c in cases) == sorted(o.name for o in OPTIONS)


@pytest.mark.parametrize("how", ["cli", "env", "ini"])
@pytest.mark.parametrize("group", list(GROUPS))
def test_every_option_three_spellings(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch,
                                      how: str, group: str) -> None:
    values: dict[str, Any] = {}
    (pytester.path / "waivers.yaml").write_text("waivers:\n  - {id: DLV-3, reason: slow, expires: 2999-01-01}\n")
    for name, raw, extra, _, _ in GROUPS[group]:
        values.update({name: raw, **extra})
    settings = _settings_of(pytester, *_spell(pytester, clean_env, how, values))
    wrong = {name: (getter(settings), expected) for name, _, _, getter, expected in GROUPS[group]
             if getter(settings) != expected}
    assert wrong == {}, "option: (got, expected)"
    assert {n: settings.sources[n] for n in values} == {n: SOURCE[how] for n in values}


@pytest.mark.parametrize("args, expected", [
    ((), ("pr", 60.0, 8)),
    (("--gate-level", "release"), ("release", 300.0, 40)),
    (("--gate-level", "release", "--idle-window-s", "20"), ("release", 20.0, 40)),
    (("--examples", "3"), ("pr", 60.0, 3)),
])
def test_gate_level_sets_the_window_and_the_examples(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch,
                                                      args: tuple[str, ...], expected: tuple) -> None:
    s = _settings_of(pytester, *args)
    assert (s.gate_level, s.idle_window_s, s.examples) == expected


def test_browser_defaults_and_header(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    """auto by default, Chromium looked up, the page on a free port; the header says so, and off says off."""
    s = _settings_of(pytester)
    assert (s.browser, s.browser_path, s.browser_origin, s.page_origins) == ("auto", None, None, ())
    from realtime_conformance.harness.settings import header_lines

    line = next(l for l in header_lines(s) if "browser checks" in l)
    assert line == ("realtime-conformance: browser checks auto (Chromium looked up: /usr/bin/chromium, chromium, "
                    "chromium-browser, google-chrome; page origin a free loopback port)")
    url = _settings_of(pytester, "--gateway-url=http://127.0.0.1:3999", f"--jwt-secret={SECRET}")
    assert "page origin none: give --browser-origin" in next(l for l in header_lines(url) if "browser checks" in l)
    off = _settings_of(pytester, "--browser=off")
    assert "realtime-conformance: browser checks off (--browser off)" in header_lines(off)


def test_defaults(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    s = _settings_of(pytester)
    assert (s.jwt_algorithm, s.queue, s.latency_budget_ms, s.strict, s.report_dir) == (
        "HS256", QUEUE, 1000.0, False, "reports")
    # auto is resolved as the settings are read, and says why (which depends on this machine).
    assert (s.broker, s.sources["broker"]) == (*_settings_module.detect_broker(os.environ)[:1],
                                               "auto: " + _settings_module.detect_broker(os.environ)[1])
    assert s.sources["jwt_secret"] == "generated for this run"
    assert len(s.jwt_secret.encode()) >= 32
    assert s.rest_paths == dict(contract.rest_paths())
    assert s.target_kind == "process" and s.reference_target


PRECEDENCE_TEST = r"""
import json

def test_dump(conformance_settings):
    s = conformance_settings
    print("\nDUMP " + json.dumps({"broker": s.broker, "budget": s.latency_budget_ms,
                                "claim": s.tenant_claim, "queue": s.queue, "sources": dict(s.sources)}))
"""


def _dump(result: pytest.RunResult) -> dict:
    line = next(l for l in result.outlines if l.startswith("DUMP "))
    return json.loads(line[5:])


def test_precedence_cli_env_ini_default(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(PRECEDENCE_TEST)
    pytester.makeini("[pytest]\nbroker = container\nlatency_budget_ms = 100\ntenant_claim = ini_claim\n")
    clean_env.setenv("RTC_BROKER", "container")
    clean_env.setenv("RTC_LATENCY_BUDGET_MS", "200")
    result = pytester.runpytest("--broker", "process", "-s")
    result.assert_outcomes(passed=1)
    dump = _dump(result)
    # broker: CLI beats env and ini; budget: env beats ini; claim: ini beats default; queue: default.
    assert dump["broker"] == "process" and dump["sources"]["broker"] == "command line"
    assert dump["budget"] == 200.0 and dump["sources"]["latency_budget_ms"] == "environment"
    assert dump["claim"] == "ini_claim" and dump["sources"]["tenant_claim"] == "ini"
    assert dump["queue"] == QUEUE and dump["sources"]["queue"] == "default"
    result.stdout.fnmatch_lines([f"realtime-conformance: broker=process queue={QUEUE} budget=200 ms strict=False report_dir=reports"])


def test_empty_env_value_falls_through_to_ini(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\nbroker = process\n")
    clean_env.setenv("RTC_BROKER", "")
    s = _settings_of(pytester)
    assert (s.broker, s.sources["broker"]) == ("process", "ini")


def test_header_shows_target_broker_budget(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("--latency-budget-ms", "250")
    result.assert_outcomes(passed=1)
    target = (f"realtime-conformance: target=process {shlex.quote(sys.executable)} -m realtime_conformance.gateway "
              f"(cwd {pytester.path})")
    assert target in result.outlines
    broker, why = _settings_module.detect_broker(os.environ)
    assert (f"realtime-conformance: broker={broker} queue={QUEUE} budget=250 ms strict=False report_dir=reports"
            in result.outlines)
    assert f"realtime-conformance: broker={broker} chosen by --broker auto ({why})" in result.outlines
    assert ("realtime-conformance: set jwt_secret=*** (64 bytes, generated for this run), latency_budget_ms=250.0"
            in result.outlines)


def test_header_for_url_target_redacts_the_secret(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(PRECEDENCE_TEST)
    clean_env.setenv("RTC_JWT_SECRET", SECRET)
    result = pytester.runpytest("--gateway-url", "http://127.0.0.1:3999", "-s")
    result.assert_outcomes(passed=1)
    assert "realtime-conformance: target=url http://127.0.0.1:3999" in result.outlines
    set_line = next(l for l in result.outlines if l.startswith("realtime-conformance: set "))
    assert set_line == ("realtime-conformance: set gateway_url=http://127.0.0.1:3999, "
                        "jwt_secret=*** (40 bytes, environment)")
    everything = result.stdout.str() + result.stderr.str()
    assert SECRET not in everything
    assert "x" * 33 not in everything


def test_generated_secret_is_not_printed(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("""
def test_secret(conformance_settings):
    print("LEN", len(conformance_settings.jwt_secret))
    assert conformance_settings.redacted()["jwt_secret"].startswith("*** (")
    open("secret.txt", "w").write(conformance_settings.jwt_secret)
""")
    result = pytester.runpytest("-s", "-v")
    result.assert_outcomes(passed=1)
    secret = (pytester.path / "secret.txt").read_text()
    assert len(secret) >= 32
    assert secret not in result.stdout.str() + result.stderr.str()


def test_amqp_url_alone_implies_external_broker(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("--amqp-url", "amqp://guest:guest@127.0.0.1:5672/")
    result.assert_outcomes(passed=1)
    assert (f"realtime-conformance: broker=external queue={QUEUE} budget=1000 ms strict=False report_dir=reports"
            in result.outlines)
    s = _settings_of(pytester, "--amqp-url", "amqp://guest:guest@127.0.0.1:5672/")
    assert s.sources["broker"] == "implied by amqp_url (command line)"


def test_explicit_broker_is_kept_with_amqp_url(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    s = _settings_of(pytester, "--amqp-url", "amqp://127.0.0.1:5672/", "--broker", "process")
    assert s.broker == "process"


def test_lacks_and_url_target_capabilities(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    s = _settings_of(pytester, "--lacks", "rest", "--gateway-url", "http://127.0.0.1:1", "--jwt-secret", SECRET)
    assert not s.has("rest")
    assert not s.has("restart")  # a URL target cannot be restarted by the harness
    assert s.has("polling")


# --------------------------------------------------------------------------- bad values

def _opt(name: str) -> str:
    return BY_NAME[name].spellings


PLACEHOLDERS = ("{host}, {port}, {amqp_url}, {jwt_secret}, {jwt_algorithm}, {tenant_claim}, {allowed_origins}, {queue}, "
                "{workdir}, {shared_dir}, {redis_url}, {replica}")

BAD: list[tuple[str, list[str], str]] = [
    ("browser", ["--browser=yes"],
     "--browser (ini 'browser', env RTC_BROWSER): 'yes' is not a valid choice; choose from: auto, required, off (auto "
     "runs the browser checks where Chromium and npm are installed, required insists, off skips them)"),
    ("browser_origin_host", ["--browser-origin=http://portal.example:3014"],
     "--browser-origin (ini 'browser_origin', env RTC_BROWSER_ORIGIN): 'http://portal.example:3014' is not an origin "
     "the harness can serve the page at; write http://localhost:PORT or http://127.0.0.1:PORT with a port free on "
     "this machine, one your gateway's allowed origins list"),
    ("browser_origin_path", ["--browser-origin=http://localhost:3014/portal"],
     "--browser-origin (ini 'browser_origin', env RTC_BROWSER_ORIGIN): 'http://localhost:3014/portal' is not an origin "
     "the harness can serve the page at; write http://localhost:PORT or http://127.0.0.1:PORT with a port free on "
     "this machine, one your gateway's allowed origins list"),
    ("broker", ["--broker=nope"],
     "--broker (ini 'broker', env RTC_BROKER): 'nope' is not a valid choice; choose from: auto, process, container, external"),
    ("jwt_algorithm", ["--jwt-algorithm=RS256"],
     "--jwt-algorithm (ini 'jwt_algorithm', env RTC_JWT_ALGORITHM): 'RS256' is not a valid choice; choose from: HS256, HS384, HS512"),
    ("latency_nan", ["--latency-budget-ms=fast"],
     "--latency-budget-ms (ini 'latency_budget_ms', env RTC_LATENCY_BUDGET_MS): 'fast' is not a number; give e.g. 1000.0"),
    ("latency_low", ["--latency-budget-ms=0"],
     "--latency-budget-ms (ini 'latency_budget_ms', env RTC_LATENCY_BUDGET_MS): '0' must be at least 1"),
    ("stop_grace_low", ["--stop-grace-s=0"],
     "--stop-grace-s (ini 'stop_grace_s', env RTC_STOP_GRACE_S): '0' must be at least 1"),
    ("stop_grace_high", ["--stop-grace-s=3600"],
     "--stop-grace-s (ini 'stop_grace_s', env RTC_STOP_GRACE_S): '3600' must be at most 600 (seconds); give your "
     "deployment's grace period, e.g. 30 for Kubernetes' default"),
    ("silent_close_low", ["--silent-close-s=0"],
     "--silent-close-s (ini 'silent_close_s', env RTC_SILENT_CLOSE_S): '0' must be at least 1"),
    ("silent_close_high", ["--silent-close-s=601"],
     "--silent-close-s (ini 'silent_close_s', env RTC_SILENT_CLOSE_S): '601' must be at most 600 (seconds); give how "
     "long your gateway may keep a client that says nothing, e.g. 60"),
    ("env_no_equals", ["--gateway-env=FOO"],
     "--gateway-env (ini 'gateway_env', env RTC_GATEWAY_ENV): 'FOO' is not KEY=TEMPLATE; e.g. --gateway-env AMQP_URL={amqp_url}"),
    ("env_placeholder", ["--gateway-env=URL={nope}"],
     "--gateway-env (ini 'gateway_env', env RTC_GATEWAY_ENV): 'URL={nope}' uses the unknown placeholder {nope}; known: "
     + PLACEHOLDERS),
    ("lacks", ["--lacks=rest,teleport"],
     "--lacks (ini 'lacks', env RTC_LACKS): 'teleport' is not a valid choice; choose from: rest, event-read-model, restart, polling, broker-restart, dead-letter-queue"),
    ("requirements_area", ["--requirements=XYZ-*"],
     "--requirements (ini 'requirements', env RTC_REQUIREMENTS): 'XYZ-*' names no area; areas: "
     + ", ".join(AREAS) + " (e.g. ROB-*)"),
    ("requirements", ["--requirements=DLV-1,XYZ-9"],
     "--requirements (ini 'requirements', env RTC_REQUIREMENTS): 'XYZ-9' is not a requirement ID; see CONFORMANCE.md (e.g. DLV-1,ISO-1)"),
    ("url_no_secret", ["--gateway-url=http://127.0.0.1:3015"],
     "--gateway-url needs the secret your gateway verifies tokens with: --jwt-secret (ini 'jwt_secret', env RTC_JWT_SECRET)"),
    ("short_secret", ["--jwt-secret=tooshort"],
     "--jwt-secret (ini 'jwt_secret', env RTC_JWT_SECRET): '***' is 8 bytes; HS256 secrets need at least 32 bytes (RFC 7518 3.2)"),
    ("two_targets", ["--gateway-url=http://127.0.0.1:3015", "--gateway-cmd=run-it"],
     "give at most one target: --gateway-url and --gateway-cmd were both set (from command line, command line)"),
    ("bad_url", ["--gateway-url=127.0.0.1:3015", f"--jwt-secret={SECRET}"],
     "--gateway-url (ini 'gateway_url', env RTC_GATEWAY_URL): '127.0.0.1:3015' is not a URL with scheme http or https; e.g. http://127.0.0.1:3015"),
    ("replicas_zero", ["--gateway-replicas=0"],
     "--gateway-replicas (ini 'gateway_replicas', env RTC_GATEWAY_REPLICAS): '0' must be at least 1"),
    ("replicas_many", ["--gateway-replicas=40"],
     "--gateway-replicas (ini 'gateway_replicas', env RTC_GATEWAY_REPLICAS): '40' is more than this harness starts (8); "
     "2 or 3 show every cluster defect"),
    ("replicas_vs_urls", ["--gateway-url=http://127.0.0.1:3015,http://127.0.0.1:3016", "--gateway-replicas=3",
                          f"--jwt-secret={SECRET}"],
     "--gateway-replicas (ini 'gateway_replicas', env RTC_GATEWAY_REPLICAS): '3' does not match the 2 URL(s) "
     "--gateway-url lists; a URL target's instances are its URLs: list one per instance, or drop --gateway-replicas"),
    ("redis_choice", ["--redis=docker"],
     "--redis (ini 'redis', env RTC_REDIS): 'docker' is not a valid choice; choose from: auto, process, container, external"),
    ("redis_external_no_url", ["--redis=external"],
     "--redis external needs --redis-url (ini 'redis_url', env RTC_REDIS_URL), e.g. redis://127.0.0.1:6390/0"),
    ("redis_own_and_url", ["--redis=container", "--redis-url=redis://127.0.0.1:6390/0"],
     "--redis container starts a Redis of the harness's own, but --redis-url names one to use (from command line): "
     "drop --redis-url, or use --redis external"),
    ("redis_process_for_image", ["--gateway-image=example/gw:1", "--redis=process"],
     "--gateway-image runs the gateway in a container, which cannot reach a --redis process server on the host's "
     "loopback; use --redis container or --redis external --redis-url URL"),
    ("redis_scheme", ["--redis-url=http://127.0.0.1:6379"],
     "--redis-url (ini 'redis_url', env RTC_REDIS_URL): 'http://127.0.0.1:6379' is not a URL with scheme redis or "
     "rediss; e.g. redis://127.0.0.1:6379"),
    ("rest_key", ['--rest-paths={"stats": "/s", "bogus": "/b"}'],
     "--rest-paths (ini 'rest_paths', env RTC_REST_PATHS): 'bogus' is not a REST path key; known: stats, refresh, conversations, messages, health"),
    ("rest_json", ["--rest-paths={nope"],
     "--rest-paths (ini 'rest_paths', env RTC_REST_PATHS): '{nope' is not valid JSON (Expecting property name enclosed in double quotes); "
     "give an object such as '{\"aud\": \"agent-portal\"}'"),
    ("claims_array", ["--extra-claims=[1, 2]"],
     "--extra-claims (ini 'extra_claims', env RTC_EXTRA_CLAIMS): '[1, 2]' must be a JSON object ({...})"),
    ("claims_placeholder", ['--extra-claims={"org": {"id": "{org}"}}'],
     "--extra-claims (ini 'extra_claims', env RTC_EXTRA_CLAIMS): '{\"org\": {\"id\": \"{org}\"}}' uses the unknown "
     "placeholder {org}; known: {tenant}, {user}, {n} (write {{ and }} for literal braces)"),
    ("tenant_claim_segment", ["--tenant-claim=app_metadata..tenant"],
     "--tenant-claim (ini 'tenant_claim', env RTC_TENANT_CLAIM): 'app_metadata..tenant' has an empty segment; separate "
     "nested claims with single dots (app_metadata.tenant) and write \\. for a dot inside a name (org\\.id)"),
    ("tenant_claim_under_a_string", ["--tenant-claim=app_metadata.tenant", '--extra-claims={"app_metadata": "x"}'],
     "--tenant-claim (ini 'tenant_claim', env RTC_TENANT_CLAIM): 'app_metadata.tenant' nests the tenant inside "
     "'app_metadata', which --extra-claims sets to 'x'; make that claim an object, or escape the dot (\\.) if the "
     "claim's name contains one"),
    ("policy_shape", ["--reconnect-policy=retries=3"],
     "--reconnect-policy (ini 'reconnect_policy', env RTC_RECONNECT_POLICY): 'retries=3' must look like attempts=5,delay=1000,max=5000,jitter=0.5"),
    ("policy_number", ["--reconnect-policy=attempts=five"],
     "--reconnect-policy (ini 'reconnect_policy', env RTC_RECONNECT_POLICY): 'attempts=five' has a non-number for attempts"),
    ("policy_range", ["--reconnect-policy=attempts=3,delay=2000,max=1000"],
     "--reconnect-policy (ini 'reconnect_policy', env RTC_RECONNECT_POLICY): 'attempts=3,delay=2000,max=1000' needs attempts >= 1, 0 < delay <= max, 0 <= jitter < 1"),
    ("external_no_amqp", ["--broker=external"],
     "--broker external needs --amqp-url (ini 'amqp_url', env RTC_AMQP_URL), e.g. amqp://guest:guest@127.0.0.1:5672/"),
    ("image_process", ["--gateway-image=example/gw:1", "--broker=process"],
     "--gateway-image runs the gateway in a container, which cannot reach a --broker process node; use --broker container or --broker external"),
    ("forbidden_overlap", ["--forbidden-origins=http://evil.example,http://localhost:3000"],
     "--forbidden-origins (ini 'forbidden_origins', env RTC_FORBIDDEN_ORIGINS): 'http://localhost:3000' is allowed by the "
     "allowed_origins entry 'http://localhost:3000'; an origin cannot be both: remove it from one of the two lists"),
    ("forbidden_wildcard_overlap", ["--allowed-origins=https://*.example.com", "--forbidden-origins=https://a.b.example.com"],
     "--forbidden-origins (ini 'forbidden_origins', env RTC_FORBIDDEN_ORIGINS): 'https://a.b.example.com' is allowed by the "
     "allowed_origins entry 'https://*.example.com'; an origin cannot be both: remove it from one of the two lists"),
    ("forbidden_replace_empty", ["--forbidden-origins=="],
     "--forbidden-origins (ini 'forbidden_origins', env RTC_FORBIDDEN_ORIGINS): '=' replaces the generated look-alikes "
     "with nothing; list origins after the '=', e.g. '=https://evil.example,null', or drop the '=' to add to the look-alikes"),
    ("forbidden_replace_inside", ["--forbidden-origins=https://evil.example,=null"],
     "--forbidden-origins (ini 'forbidden_origins', env RTC_FORBIDDEN_ORIGINS): '=null' has '=' inside the list; only a "
     "leading '=' (before the first origin) replaces the generated look-alikes"),
    ("forbidden_pattern", ["--forbidden-origins=https://*.evil.example"],
     "--forbidden-origins (ini 'forbidden_origins', env RTC_FORBIDDEN_ORIGINS): 'https://*.evil.example' is a pattern; "
     "forbidden origins are sent as Origin headers, so list concrete origins such as https://app.evil.example"),
    ("allowed_path", ["--allowed-origins=http://localhost:3012/app"],
     "--allowed-origins (ini 'allowed_origins', env RTC_ALLOWED_ORIGINS): 'http://localhost:3012/app' is not an origin; "
     "write scheme://host[:port] with no path, or scheme://*.domain[:port] for its subdomains, "
     "e.g. http://localhost:3012,https://*.example.com"),
    ("allowed_inner_wildcard", ["--allowed-origins=https://app.*.example.com"],
     "--allowed-origins (ini 'allowed_origins', env RTC_ALLOWED_ORIGINS): 'https://app.*.example.com' is not an origin; "
     "write scheme://host[:port] with no path, or scheme://*.domain[:port] for its subdomains, "
     "e.g. http://localhost:3012,https://*.example.com"),
    ("gate_level", ["--gate-level=nightly"],
     "--gate-level (ini 'gate_level', env RTC_GATE_LEVEL): 'nightly' is not a gate level; choose from: pr, release "
     "(pr for every pull request, release before a release)"),
    ("examples_word", ["--examples=many"],
     "--examples (ini 'examples', env RTC_EXAMPLES): 'many' is not a number; give e.g. 8 (the pr level's)"),
    ("idle_window_zero", ["--gate-level=release", "--idle-window-s=0"],
     "--idle-window-s (ini 'idle_window_s', env RTC_IDLE_WINDOW_S): '0' must be a number of at least 1; the release level uses 300.0"),
    ("strict_not_bool", [],  # env only: the flag itself takes no value
     "--conformance-strict (ini 'conformance_strict', env RTC_CONFORMANCE_STRICT): 'maybe' is not a boolean; use true or false"),
]


def _errors(result: pytest.RunResult) -> list[str]:
    return [l for l in result.errlines if l.startswith("ERROR:")]


@pytest.mark.parametrize("args, message", [(a, m) for _, a, m in BAD], ids=[i for i, _, _ in BAD])
def test_bad_value_fails_at_start(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch,
                                  args: list[str], message: str) -> None:
    pytester.makepyfile("def test_never():\n    raise AssertionError('must not run')\n")
    if not args:
        clean_env.setenv("RTC_CONFORMANCE_STRICT", "maybe")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert _errors(result) == [f"ERROR: {message}"]
    assert "must not run" not in result.stdout.str()


@pytest.mark.parametrize("how", ["cli", "env", "ini"])
def test_bad_choice_in_every_spelling(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, how: str) -> None:
    pytester.makepyfile("def test_never():\n    pass\n")
    args = _spell(pytester, clean_env, how, {"broker": "nope"})
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert _errors(result) == ["ERROR: --broker (ini 'broker', env RTC_BROKER): 'nope' is not a valid choice; "
                               "choose from: auto, process, container, external"]


def test_target_clash_names_where_each_came_from(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_never():\n    pass\n")
    pytester.makeini("[pytest]\ngateway_image = example/gw:1\n")
    clean_env.setenv("RTC_GATEWAY_CMD", "run-it")
    result = pytester.runpytest()
    assert _errors(result) == ["ERROR: give at most one target: --gateway-cmd and --gateway-image were both set "
                               "(from environment, ini)"]


def test_short_secret_from_env_is_not_echoed(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_never():\n    pass\n")
    clean_env.setenv("RTC_JWT_SECRET", "hunter2-hunter2")
    result = pytester.runpytest()
    assert _errors(result) == ["ERROR: --jwt-secret (ini 'jwt_secret', env RTC_JWT_SECRET): '***' is 15 bytes; "
                               "HS256 secrets need at least 32 bytes (RFC 7518 3.2)"]
    assert "hunter2" not in result.stdout.str() + result.stderr.str()


def test_secret_length_counts_bytes_not_characters(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    # 11 three-byte characters: 11 code points but 33 bytes, enough for HMAC.
    s = _settings_of(pytester, "--jwt-secret", "€" * 11)
    assert s.jwt_secret == "€" * 11
    assert s.redacted()["jwt_secret"] == "*** (33 bytes, command line)"


def test_secret_must_match_the_algorithms_hash_size(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_never():\n    pass\n")
    result = pytester.runpytest("--jwt-algorithm=HS512", f"--jwt-secret={SECRET}")  # 40 bytes
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert len(_errors(result)) == 1 and "64 bytes" in _errors(result)[0]
    assert SECRET not in result.stderr.str()


@pytest.mark.parametrize("flag", ["--latency-budget-ms", "--gateway-startup-timeout"])
def test_nan_is_not_a_number(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, flag: str) -> None:
    pytester.makepyfile("def test_never():\n    pass\n")
    result = pytester.runpytest(f"{flag}=nan")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    opt = BY_NAME[flag[2:].replace("-", "_")]
    assert _errors(result)[0].startswith(f"ERROR: {opt.spellings}: 'nan' ")


# --------------------------------------------------------------------------- origins

def test_look_alikes_cover_every_allowed_origin(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    s = _settings_of(pytester, "--allowed-origins", "http://localhost:3012,https://portal.example.com")
    assert s.allowed_origin_examples == ("http://localhost:3012", "https://portal.example.com")
    for origin in ("https://localhost:3012", "http://localhost:3013", "http://localhost:30120", "http://evillocalhost:3012",
                   "http://portal.example.com", "https://portal.example.com:444", "https://evilportal.example.com",
                   "https://portal.example.com.evil.example", "null"):
        assert origin in s.forbidden_origins, origin
    assert s.sources["forbidden_origins"] == "default"


def test_wildcard_origin_examples_and_look_alikes(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    s = _settings_of(pytester, "--allowed-origins", "http://localhost:3012,https://*.example.com")
    # ORIG-1 tries concrete origins; the first one is ORIG-2's positive control.
    assert s.allowed_origin_examples == ("http://localhost:3012", "https://app.example.com", "https://deep.app.example.com")
    for origin in ("https://example.com", "https://evilexample.com", "https://app.evilexample.com",
                   "https://example.com.evil.test", "https://app.example.com.evil.test", "http://app.example.com",
                   "https://app.example.com:444", "https://app.example.com/"):
        assert origin in s.forbidden_origins, origin
    assert not set(s.allowed_origin_examples) & set(s.forbidden_origins)


def test_generated_look_alikes_never_include_an_allowed_origin(pytester: pytest.Pytester,
                                                               clean_env: pytest.MonkeyPatch) -> None:
    # http://localhost:3013 is a look-alike of 3012 (next port), but allowed here.
    s = _settings_of(pytester, "--allowed-origins", "http://localhost:3012,http://localhost:3013,http://*.localhost:3012")
    assert "http://localhost:3013" not in s.forbidden_origins
    assert "http://localhost:3014" in s.forbidden_origins
    # The bare apex is a look-alike of *.localhost:3012, but the exact entry allows it.
    assert "http://localhost:3012" not in s.forbidden_origins
    assert "http://evillocalhost:3012" in s.forbidden_origins


@pytest.mark.parametrize("how", ["cli", "env", "ini"])
def test_forbidden_origins_add_or_replace(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, how: str) -> None:
    added = _settings_of(pytester, *_spell(pytester, clean_env, how, {"forbidden_origins": "https://other.example"}))
    assert added.forbidden_origins[0] == "https://other.example" and len(added.forbidden_origins) > 20
    replaced = _settings_of(pytester, *_spell(pytester, clean_env, how,
                                              {"forbidden_origins": "=https://other.example, null"}))
    assert replaced.forbidden_origins == ("https://other.example", "null")


# --------------------------------------------------------------------------- gateway working directory

CWD_TEST = r"""
import os

def test_cwd(conformance_settings):
    print("\nCWD " + conformance_settings.gateway_cwd + " " + conformance_settings.sources["gateway_cwd"])
"""


def _cwd_of(result: pytest.RunResult) -> str:
    return next(l for l in result.outlines if l.startswith("CWD ")).split(" ")[1]


def test_gateway_cwd_defaults_to_the_ini_folder_of_gateway_cmd(pytester: pytest.Pytester,
                                                               clean_env: pytest.MonkeyPatch) -> None:
    """gateway_cmd in an ini: the gateway runs in that ini's folder, wherever pytest is started."""
    project = pytester.mkdir("project")
    (project / "pytest.ini").write_text("[pytest]\ngateway_cmd = ./run-gateway --port 1\n")
    (project / "test_cwd.py").write_text(CWD_TEST)
    elsewhere = pytester.mkdir("elsewhere")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(elsewhere)
        result = pytester.runpytest(str(project / "test_cwd.py"), "-c", str(project / "pytest.ini"), "-s")
    result.assert_outcomes(passed=1)
    assert _cwd_of(result) == str(project.resolve())
    assert f"realtime-conformance: target=process ./run-gateway --port 1 (cwd {project.resolve()})" in result.outlines


@pytest.mark.parametrize("how", ["cli", "env"])
def test_gateway_cwd_defaults_to_the_current_directory(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch,
                                                       how: str) -> None:
    """gateway_cmd from the command line or environment: relative to where pytest was started."""
    pytester.makeini("[pytest]\n")
    sub = pytester.mkdir("sub")
    pytester.makepyfile(test_cwd=CWD_TEST)
    args = _spell(pytester, clean_env, how, {"gateway_cmd": "./run-gateway"})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sub)
        result = pytester.runpytest(str(pytester.path / "test_cwd.py"), "--rootdir", str(pytester.path),
                                    "-c", str(pytester.path / "tox.ini"), "-s", *args)
    result.assert_outcomes(passed=1)
    assert _cwd_of(result) == str(sub.resolve())


def test_gateway_cwd_relative_to_ini_folder_or_current_directory(pytester: pytest.Pytester,
                                                                 clean_env: pytest.MonkeyPatch) -> None:
    pytester.mkdir("gw")
    pytester.mkdir("sub").joinpath("gw").mkdir()
    pytester.makeini("[pytest]\ngateway_cwd = gw\n")
    s = _settings_of(pytester)
    assert (s.gateway_cwd, s.sources["gateway_cwd"]) == (str((pytester.path / "gw").resolve()), "ini")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(pytester.path / "sub")
        s = _settings_of(pytester, "--gateway-cwd", "gw", "-c", str(pytester.path / "tox.ini"))
    assert s.gateway_cwd == str((pytester.path / "sub" / "gw").resolve())


def test_gateway_cwd_must_exist(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_never():\n    pass\n")
    result = pytester.runpytest("--gateway-cwd", "no/such/dir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert _errors(result) == [
        f"ERROR: --gateway-cwd (ini 'gateway_cwd', env RTC_GATEWAY_CWD): 'no/such/dir' is not an existing folder "
        f"({pytester.path / 'no/such/dir'}); give the folder the gateway command runs in (a relative path is from "
        "the current directory)"]
    pytester.makeini("[pytest]\ngateway_cwd = missing\n")
    result = pytester.runpytest()
    assert _errors(result) == [
        f"ERROR: --gateway-cwd (ini 'gateway_cwd', env RTC_GATEWAY_CWD): 'missing' is not an existing folder "
        f"({pytester.path / 'missing'}); give the folder the gateway command runs in (a relative path is from "
        "the ini file's folder)"]


def test_make_gateway_runs_the_command_in_gateway_cwd(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    from realtime_conformance.harness.providers.broker import ExternalBroker
    from realtime_conformance.harness.providers.gateway import CommandGateway
    from realtime_conformance.harness.providers.target import make_gateway

    s = _settings_of(pytester, "--gateway-cmd", "./run-gateway", "--gateway-cwd", str(tmp_path))
    broker = ExternalBroker("amqp://guest:guest@127.0.0.1:5672/")  # not contacted: the gateway is only built
    gw = make_gateway(s, broker, queue="q", workdir=tmp_path / "wd", name="gateway")
    assert isinstance(gw, CommandGateway)
    assert gw._process.cwd == tmp_path.resolve()


def test_a_missing_relative_command_names_the_folder_it_was_looked_for_in(tmp_path: Path) -> None:
    from realtime_conformance.harness.providers.processes import ManagedProcess

    proc = ManagedProcess(["./bin/no-such-gateway"], name="gateway", log_path=tmp_path / "gw.log", cwd=tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        proc.start()
    assert str(info.value) == (f"gateway: cannot run './bin/no-such-gateway' (relative to {tmp_path}): not found; "
                               "install it or fix the command")
# --------------------------------------------------------------------------- waivers and catalogue version

WAIVERS_SPELLING = "ERROR: --waivers (ini 'waivers', env RTC_WAIVERS): "
EXAMPLE = '{id: DLV-3, reason: "why it is accepted, and who fixes it", expires: 2027-01-31}'
DLV_IDS = ", ".join(f"DLV-{n}" for n in range(1, 9))


@pytest.mark.parametrize("text, why", [
    ("waivers:\n  - {id: DLV-99, reason: r, expires: 2027-01-31}\n",
     f"waiver #1 (DLV-99): unknown requirement 'DLV-99'; known here: {DLV_IDS}; see CONFORMANCE.md"),
    ("waivers:\n  - {reason: r, expires: 2027-01-31}\n",
     "waiver #1 has no id; add the requirement ID it waives, e.g. id: DLV-3"),
    ("waivers:\n  - {id: DLV-3, expires: 2027-01-31}\n",
     'waiver #1 (DLV-3) has no reason; add reason: "why it is accepted, and who fixes it"'),
    ("waivers:\n  - {id: DLV-3, reason: '  ', expires: 2027-01-31}\n",
     'waiver #1 (DLV-3) has no reason; add reason: "why it is accepted, and who fixes it"'),
    ("waivers:\n  - {id: DLV-3, reason: r}\n",
     "waiver #1 (DLV-3) has no expiry; add expires: YYYY-MM-DD (every waiver ends)"),
    ("waivers:\n  - {id: DLV-3, reason: r, expires: 31/01/2027}\n",
     "waiver #1 (DLV-3): expires '31/01/2027' is not a date; write expires: YYYY-MM-DD, e.g. expires: 2027-01-31"),
    ("waivers:\n  - {id: DLV-3, reason: r, expires: 2027-13-01}\n",
     "cannot be read (month must be in 1..12); write dates as YYYY-MM-DD, e.g. 2027-01-31"),
    ("waivers:\n  - {id: DLV-3, reason: r, expiry: 2027-01-31}\n",
     "waiver #1 (DLV-3) has unknown key(s) 'expiry'; the keys are id, reason, expires"),
    ("waivers:\n  - {id: DLV-3, reason: r, expires: 2027-01-31}\n  - {id: DLV-3, reason: s, expires: 2027-02-28}\n",
     "waiver #2 (DLV-3) repeats waiver #1; keep one waiver per requirement"),
    ("waivers:\n  - DLV-3\n", f"waiver #1 is not a mapping; write it as {EXAMPLE}"),
    ("- {id: DLV-3, reason: r, expires: 2027-01-31}\n",
     f"expected one key, 'waivers', holding a list; e.g. waivers: [{EXAMPLE}]"),
    ("waivers: [\n", f"not valid YAML (expected the node content, but found '<stream end>' at line 2); "
                     f"each entry looks like {EXAMPLE}"),
])
def test_bad_waiver_file_fails_at_start_naming_file_entry_and_fix(pytester: pytest.Pytester,
                                                                 clean_env: pytest.MonkeyPatch,
                                                                 text: str, why: str) -> None:
    pytester.makepyfile("def test_never():\n    pass\n")
    path = pytester.path / "waivers.yaml"
    path.write_text(text, encoding="utf-8")
    result = pytester.runpytest("--waivers", "waivers.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert _errors(result) == [f"{WAIVERS_SPELLING}{path}: {why}"]


def test_missing_waiver_file_says_where_it_looked(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_never():\n    pass\n")
    clean_env.setenv("RTC_WAIVERS", "nope/waivers.yaml")
    result = pytester.runpytest()
    assert _errors(result) == [
        f"{WAIVERS_SPELLING}{pytester.path / 'nope' / 'waivers.yaml'}: no such file; create it, or fix the path "
        "(relative paths resolve against the folder of the ini file that names it, else the rootdir)"]


def test_waiver_path_in_ini_is_relative_to_the_ini_files_folder(pytester: pytest.Pytester,
                                                                clean_env: pytest.MonkeyPatch) -> None:
    cfg = pytester.mkdir("cfg")
    (cfg / "pytest.ini").write_text("[pytest]\nwaivers = gate/waivers.yaml\n")
    (cfg / "gate").mkdir()
    (cfg / "gate" / "waivers.yaml").write_text("waivers:\n  - {id: DLV-3, reason: slow, expires: 2027-01-31}\n")
    s = _settings_of(pytester, "-c", str(cfg / "pytest.ini"), "--rootdir", str(pytester.path))
    assert s.waivers is not None and s.waivers.path == cfg / "gate" / "waivers.yaml"
    assert [(w.id, w.reason, w.expires.isoformat()) for w in s.waivers.entries] == [("DLV-3", "slow", "2027-01-31")]
    assert s.redacted()["waivers"] == str(cfg / "gate" / "waivers.yaml")


def test_empty_waiver_file_is_no_waivers(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    (pytester.path / "waivers.yaml").write_text("# nothing waived any more\n")
    s = _settings_of(pytester, "--waivers", "waivers.yaml")
    assert s.waivers is not None and s.waivers.entries == ()


def test_header_names_the_waivers_and_the_catalogue_version(pytester: pytest.Pytester,
                                                            clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    (pytester.path / "waivers.yaml").write_text("waivers:\n  - {id: DLV-3, reason: slow, expires: 2999-01-31}\n"
                                                "  - {id: DLV-2, reason: slow, expires: 2020-01-31}\n")
    result = pytester.runpytest("--waivers", "waivers.yaml", "--catalogue-version", CATALOGUE_VERSION)
    result.assert_outcomes(passed=1)
    assert f"realtime-conformance: catalogue version {CATALOGUE_VERSION} (pinned)" in result.outlines
    assert (f"realtime-conformance: 2 waiver(s) from {pytester.path / 'waivers.yaml'}; expired: DLV-2"
            in result.outlines)


def test_unpinned_catalogue_version_is_shown_not_enforced(pytester: pytest.Pytester,
                                                          clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert (f"realtime-conformance: catalogue version {CATALOGUE_VERSION} "
            "(not pinned: set catalogue_version to pin it)") in result.outlines


@pytest.fixture
def three_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalogue history with two releases after the first, as a later harness would have."""
    from realtime_conformance.harness.judging import catalogue as _catalogue

    history = (_catalogue.CHANGELOG[0],
               _catalogue.Change("2", added=("AUTH-12",), retired=("MET-2",)),
               _catalogue.Change("3", added=("MET-5", "MET-6", "REST-3"), retired=("AUTH-11",)))
    monkeypatch.setattr(_catalogue, "CHANGELOG", history)
    monkeypatch.setattr(_catalogue, "CATALOGUE_VERSION", "3")


VERSION_SPELLING = "ERROR: --catalogue-version (ini 'catalogue_version', env RTC_CATALOGUE_VERSION): "


@pytest.mark.parametrize("how, accept", [
    ("ini", "catalogue_version = 3 in the ini file"),
    ("cli", "--catalogue-version 3"),
    ("env", "RTC_CATALOGUE_VERSION=3"),
])
def test_pinned_older_catalogue_lists_the_changes_and_how_to_accept(pytester: pytest.Pytester,
                                                                    clean_env: pytest.MonkeyPatch,
                                                                    three_versions: None, how: str,
                                                                    accept: str) -> None:
    pytester.makepyfile("def test_never():\n    pass\n")
    args = _spell(pytester, clean_env, how, {"catalogue_version": "1"})
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert _errors(result) == [
        f"{VERSION_SPELLING}'1' is pinned, but the installed catalogue is version 3. Since version 1: "
        "added AUTH-12, MET-5..6, REST-3; retired MET-2, AUTH-11. Review them in CONFORMANCE.md, "
        f"then accept the upgrade by updating the pin: {accept}"]


def test_pin_of_the_previous_version_lists_only_the_last_change(pytester: pytest.Pytester,
                                                                clean_env: pytest.MonkeyPatch,
                                                                three_versions: None) -> None:
    pytester.makepyfile("def test_never():\n    pass\n")
    result = pytester.runpytest("--catalogue-version", "2")
    assert _errors(result) == [
        f"{VERSION_SPELLING}'2' is pinned, but the installed catalogue is version 3. Since version 2: "
        "added MET-5..6, REST-3; retired AUTH-11. Review them in CONFORMANCE.md, "
        "then accept the upgrade by updating the pin: --catalogue-version 3"]
    assert _settings_of(pytester, "--catalogue-version", "3").catalogue_version == "3"


def test_unknown_catalogue_version_says_upgrade_or_repin(pytester: pytest.Pytester,
                                                         clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_never():\n    pass\n")
    result = pytester.runpytest("--catalogue-version", "99")
    assert _errors(result) == [
        f"{VERSION_SPELLING}'99' is not a catalogue version this harness knows (it knows "
        f"{', '.join(c.version for c in CHANGELOG)}; "
        f"installed: {CATALOGUE_VERSION}); if your pin is newer, upgrade realtime-conformance, "
        f"else pin {CATALOGUE_VERSION}"]


@pytest.mark.parametrize("args, expected", [(("--examples", "5"), 5), (("--gate-level", "release"), 40), ((), 8)])
def test_the_gate_level_sets_how_many_examples_hypothesis_draws(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch,
                                                                args: tuple[str, ...], expected: int) -> None:
    pytester.makepyfile(f"""
        from hypothesis import given, strategies as st
        drawn = []

        @given(st.integers())
        def test_draws(x):
            drawn.append(x)

        def test_count():
            assert len(drawn) == {expected}
    """)
    result = pytester.runpytest("--hypothesis-profile", "ci", *args)
    result.assert_outcomes(passed=2)
    assert "gate level " in result.stdout.str()


def test_the_header_shows_the_stop_bound(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    s = _settings_of(pytester, "--stop-grace-s=25")
    assert "realtime-conformance: graceful stop bound 25 s (FAULT-7; SIGKILL 27 s after SIGTERM)" in header_lines(s)
    url = _settings_of(pytester, "--gateway-url=http://127.0.0.1:3015", f"--jwt-secret={SECRET}")
    assert not any("graceful stop" in line for line in header_lines(url))  # the harness cannot stop a URL target


def test_a_url_target_lists_its_instances(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    s = _settings_of(pytester, "--gateway-url=http://127.0.0.1:3015, http://127.0.0.1:3016", f"--jwt-secret={SECRET}")
    assert (s.gateway_url, s.gateway_urls, s.gateway_replicas, s.cluster) == (
        "http://127.0.0.1:3015", ("http://127.0.0.1:3015", "http://127.0.0.1:3016"), 2, True)


def test_one_replica_by_default_and_no_redis(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    s = _settings_of(pytester)
    assert (s.gateway_replicas, s.cluster, s.redis_url) == (1, False, None)
    assert s.gateway_env["REDIS_URL"] == "{redis_url}"
    assert s.gateway_env["DATABASE_PATH"] == "{shared_dir}/gateway.sqlite3"


@pytest.mark.parametrize("args, expected", [
    (("--gateway-replicas=2",), ("process", "default")),
    (("--gateway-replicas=2", "--gateway-image=example/gw:1",), ("container", "implied by gateway_image")),
    (("--gateway-replicas=2", "--redis-url=redis://127.0.0.1:6390/0",), ("external", "implied by redis_url (command line)")),
    (("--gateway-replicas=2", "--gateway-image=example/gw:1", "--redis-url=redis://10.0.0.7:6379/0"),
     ("external", "implied by redis_url (command line)")),
    (("--redis=container",), ("container", "command line")),
    (("--redis=external", "--redis-url=redis://127.0.0.1:6390/0"), ("external", "command line")),
    # One instance and auto: no Redis, as before; the header says what that means.
    ((), ("none", "auto: one instance gets no Redis")),
    (("--gateway-image=example/gw:1",), ("none", "auto: one instance gets no Redis")),
    (("--redis-url=redis://127.0.0.1:6390/0",),
     ("none", "auto: one instance gets no Redis (--redis-url is for 2 or more replicas, or with --redis external)")),
])
def test_redis_auto_picks_url_then_container_for_images_then_process(
        pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, args: tuple[str, ...],
        expected: tuple[str, str]) -> None:
    s = _settings_of(pytester, *args)
    assert (s.redis, s.sources["redis"]) == expected
    assert s.redis_image == "rtc/redis:local"


def test_an_image_target_runs_as_several_instances(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    s = _settings_of(pytester, "--gateway-image=example/gw:1", "--gateway-replicas=3")
    assert (s.target_kind, s.gateway_replicas, s.cluster, s.broker, s.redis) == ("image", 3, True, "container", "container")


@pytest.mark.parametrize("args, line", [
    (("--gateway-replicas=2",), "realtime-conformance: 2 gateway replicas, redis=private redis-server"),
    (("--gateway-replicas=2", "--redis=container", "--redis-image=example/redis:7"),
     "realtime-conformance: 2 gateway replicas, redis=container example/redis:7"),
    (("--gateway-image=example/gw:1", "--gateway-replicas=2"),
     "realtime-conformance: 2 gateway replicas, redis=container rtc/redis:local"),
    (("--gateway-replicas=2", "--redis-url=redis://:hunter2-pw@127.0.0.1:6390/1"),
     "realtime-conformance: 2 gateway replicas, redis=external redis://:***@127.0.0.1:6390/1"),
])
def test_header_says_where_the_replicas_redis_comes_from(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch,
                                                        args: tuple[str, ...], line: str) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1)
    assert line in result.outlines
    assert "hunter2-pw" not in result.stdout.str() + result.stderr.str()


def test_redis_kind_in_the_set_line(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    clean_env.setenv("RTC_REDIS", "container")
    result = pytester.runpytest("--redis-image", "example/redis:7")
    result.assert_outcomes(passed=1)
    set_line = next(l for l in result.outlines if l.startswith("realtime-conformance: set "))
    assert "redis=container" in set_line and "redis_image=example/redis:7" in set_line


def test_gateway_env_merges_key_by_key_across_ini_environment_and_command_line(
        pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makeini("[pytest]\ngateway_env =\n    CACHE_DB=3\n    LOG_LEVEL=info\n    MODE=ini\n    PING_TIMEOUT=\n")
    clean_env.setenv("RTC_GATEWAY_ENV", "MODE=env;EXTRA_FROM_ENV=1")
    s = _settings_of(pytester, "--gateway-env=MODE=cli", "--gateway-env=LOG_LEVEL=", "--gateway-env=PING_TIMEOUT=9")
    env = dict(s.gateway_env)
    # The ini's own entries stay unless a later layer names the same key.
    assert env["CACHE_DB"] == "3" and env["EXTRA_FROM_ENV"] == "1"
    assert env["MODE"] == "cli"  # command line over environment over ini
    assert "LOG_LEVEL" not in env  # KEY= removes what the ini added
    assert env["PING_TIMEOUT"] == "9"  # removed by the ini, put back by the command line
    assert env["RABBITMQ_URL"] == DEFAULT_GATEWAY_ENV["RABBITMQ_URL"]  # the seed's defaults under all of them
    assert s.sources["gateway_env"] == "ini + environment + command line"


def test_gateway_env_from_the_command_line_alone_keeps_the_defaults(pytester: pytest.Pytester,
                                                                    clean_env: pytest.MonkeyPatch) -> None:
    s = _settings_of(pytester, "--gateway-env=REDIS_URL=")
    assert dict(s.gateway_env) == {k: v for k, v in DEFAULT_GATEWAY_ENV.items() if k != "REDIS_URL"}
    assert s.sources["gateway_env"] == "command line"


@pytest.mark.parametrize("args, redis, chosen, gives", [
    ((), "none", False, False),
    (("--redis=process",), "process", True, True),
    (("--redis=container",), "container", True, True),
    (("--redis=external", "--redis-url=redis://127.0.0.1:6390/0"), "external", True, True),
    (("--gateway-replicas=2",), "process", False, True),
    (("--gateway-url=http://127.0.0.1:3015", f"--jwt-secret={SECRET}"), "none", False, False),
])
def test_a_lone_instance_gets_a_redis_only_when_redis_names_one(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch,
                                                                 args: tuple[str, ...], redis: str, chosen: bool,
                                                                 gives: bool) -> None:
    s = _settings_of(pytester, *args)
    assert (s.redis, s.redis_chosen, s.gives_redis) == (redis, chosen, gives)


@pytest.mark.parametrize("args, line", [
    ((), "realtime-conformance: redis=none: no Redis given to the gateway: it will use its own default "
         "({redis_url} is empty in REDIS_URL; --redis process or --redis container gives it one of the harness's own)"),
    (("--redis-url=redis://127.0.0.1:6390/0",),
     "realtime-conformance: redis=none: no Redis given to the gateway: it will use its own default "
     "({redis_url} is empty in REDIS_URL; --redis external gives it the one --redis-url names)"),
    (("--gateway-env=REDIS_URL=",),
     "realtime-conformance: redis=none: no Redis given to the gateway: it will use its own default "
     "(no gateway_env entry uses {redis_url}; --redis process or --redis container gives it one of the harness's own)"),
    (("--redis=process", "--gateway-env=CACHE_URL={redis_url}"),
     "realtime-conformance: redis=private redis-server given to the gateway in REDIS_URL, CACHE_URL; "
     "each dedicated instance gets one of its own"),
])
def test_header_says_whether_a_lone_instance_gets_a_redis(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch,
                                                          args: tuple[str, ...], line: str) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1)
    assert line in result.outlines


@pytest.mark.parametrize("docker_host, socket, answers, rabbit, expected", [
    ("", False, False, True, ("process", "no Docker engine configured; rabbitmq-server is installed")),
    ("unix:///run/d.sock", False, True, True, ("container", "a Docker engine answered")),
    ("", True, False, True, ("process", "the Docker engine did not answer; rabbitmq-server is installed")),
    ("", False, False, False, ("auto", "no Docker engine configured and rabbitmq-server is not installed")),
])
def test_broker_auto_is_resolved_with_its_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, docker_host: str,
                                                 socket: bool, answers: bool, rabbit: bool,
                                                 expected: tuple[str, str]) -> None:
    from realtime_conformance.harness.providers import broker, containers

    sock = tmp_path / "docker.sock"
    if socket:
        sock.touch()
    server = tmp_path / "rabbitmq-server"
    if rabbit:
        server.touch()
    monkeypatch.setattr(_settings_module, "DOCKER_SOCKET", sock)
    monkeypatch.setattr(broker, "RABBITMQ_SERVER", server)
    monkeypatch.setattr(containers, "docker_available", lambda: answers)
    monkeypatch.setattr(_settings_module, "_DOCKER_PROBES", {})
    assert _settings_module.detect_broker({"DOCKER_HOST": docker_host} if docker_host else {}) == expected
