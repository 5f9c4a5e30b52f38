"""Configuration: every bad value stops start-up with exit code 2 and one
message naming the variable and the fix (FAULT-5 for the secret)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from realtime_conformance.gateway.config import DEFAULT_ORIGINS, ConfigError, load_settings
from gwkit import REPO, SECRET

GOOD = {"JWT_SECRET": SECRET}

BAD: list[tuple[dict[str, str], str, str]] = [
    ({}, "JWT_SECRET",
     "JWT_SECRET is not set: set it to the HMAC secret shared with the token issuer (at least 32 bytes, "
     "e.g. JWT_SECRET=$(openssl rand -hex 32))"),
    ({"JWT_SECRET": "x" * 31}, "JWT_SECRET",
     "JWT_SECRET is too short (31 bytes): use at least 32 bytes, e.g. JWT_SECRET=$(openssl rand -hex 32)"),
    ({**GOOD, "JWT_ALGORITHM": "none"}, "JWT_ALGORITHM",
     "JWT_ALGORITHM 'none' is not accepted: use one of HS256, HS384, HS512 (the gateway verifies HMAC tokens "
     "with JWT_SECRET)"),
    ({**GOOD, "JWT_ALGORITHM": "RS256"}, "JWT_ALGORITHM", None),
    ({**GOOD, "PORT": "abc"}, "PORT",
     "PORT must be an integer from 1 to 65535, got 'abc': set PORT to a free TCP port, e.g. PORT=3015"),
    ({**GOOD, "PORT": "70000"}, "PORT", None),
    ({**GOOD, "RABBITMQ_URL": "http://localhost:5672"}, "RABBITMQ_URL",
     "RABBITMQ_URL must start with amqp:// or amqps://, got scheme 'http': "
     "e.g. RABBITMQ_URL=amqp://guest:guest@localhost:5672/"),
    ({**GOOD, "ALLOWED_ORIGINS": ""}, "ALLOWED_ORIGINS", None),
    ({**GOOD, "ALLOWED_ORIGINS": "http://localhost:3014/"}, "ALLOWED_ORIGINS",
     "ALLOWED_ORIGINS entry 'http://localhost:3014/' is not an origin: write scheme://host[:port] with no path "
     "and no trailing slash, e.g. http://localhost:3014, or scheme://*.domain[:port] for every subdomain of "
     "domain, e.g. https://*.example.com"),
    ({**GOOD, "ALLOWED_ORIGINS": "*"}, "ALLOWED_ORIGINS", None),
    # "*." is allowed only as the whole leftmost label, followed by a domain name.
    ({**GOOD, "ALLOWED_ORIGINS": "http://*example.com"}, "ALLOWED_ORIGINS", None),
    ({**GOOD, "ALLOWED_ORIGINS": "http://app.*.example.com"}, "ALLOWED_ORIGINS", None),
    ({**GOOD, "ALLOWED_ORIGINS": "http://*.*.example.com"}, "ALLOWED_ORIGINS", None),
    ({**GOOD, "ALLOWED_ORIGINS": "https://*."}, "ALLOWED_ORIGINS", None),
    ({**GOOD, "ALLOWED_ORIGINS": "https://*.example..com"}, "ALLOWED_ORIGINS", None),
    ({**GOOD, "ALLOWED_ORIGINS": "*://app.example.com"}, "ALLOWED_ORIGINS", None),
    ({**GOOD, "AMQP_PREFETCH": "0"}, "AMQP_PREFETCH", None),
    ({**GOOD, "PING_INTERVAL": "-1"}, "PING_INTERVAL",
     "PING_INTERVAL must be a number of seconds above 0 and at most 3600, got '-1': e.g. PING_INTERVAL=25"),
    ({**GOOD, "PING_TIMEOUT": "soon"}, "PING_TIMEOUT", None),
    ({**GOOD, "LOG_LEVEL": "loud"}, "LOG_LEVEL", "LOG_LEVEL 'loud' is not known: use one of debug, info, warning, error"),
]


@pytest.mark.parametrize("env,variable,message", BAD, ids=[f"{v}-{i}" for i, (_, v, _) in enumerate(BAD)])
def test_bad_settings_are_refused_with_a_clear_message(env: dict, variable: str, message: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)
    if message is not None:
        assert str(info.value) == message


def test_defaults() -> None:
    s = load_settings(GOOD)
    assert (s.host, s.port, s.rabbitmq_url) == ("0.0.0.0", 3015, "amqp://guest:guest@localhost:5672/")
    assert (s.jwt_algorithm, s.jwt_tenant_claim, s.queue, s.dlq) == (
        "HS256", "tenantId", "waba.agent-portal.events", "waba.agent-portal.events.dlq")
    assert s.allowed_origins == tuple(DEFAULT_ORIGINS.split(","))
    assert (s.database_path, s.amqp_prefetch, s.ping_interval, s.ping_timeout, s.log_level) == (
        "./data/gateway.sqlite3", 50, 25.0, 20.0, "info")


def test_wildcard_entries_are_kept_lowercased() -> None:
    s = load_settings({**GOOD, "ALLOWED_ORIGINS": "http://localhost:3014,https://*.Example.com,http://*.localhost:3000"})
    assert s.allowed_origins == ("http://localhost:3014", "https://*.example.com", "http://*.localhost:3000")


def test_process_exits_2_with_one_line_on_stderr(tmp_path) -> None:
    """The real entry point, run concurrently for a few bad environments."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "PORT", "ALLOWED_", "DATABASE_"))}
    cases = [
        ({}, "JWT_SECRET is not set"),
        ({"JWT_SECRET": "short-secret"}, "JWT_SECRET is too short (12 bytes)"),
        ({"JWT_SECRET": SECRET, "DATABASE_PATH": str(tmp_path / "f" / "x.db"), "PORT": "1", "HOST": "127.0.0.1",
          "JWT_ALGORITHM": "HS1"}, "JWT_ALGORITHM 'HS1' is not accepted"),
    ]
    procs = [subprocess.Popen([sys.executable, "-m", "realtime_conformance.gateway"], cwd=REPO, env={**base, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for env, _ in cases]
    for proc, (_, expected) in zip(procs, cases):
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 2, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], err
        assert lines[0].startswith("agent-portal-gateway: configuration error: ")
