"""Settings from environment variables, validated once at start-up.

Every check names the variable and the fix, because a gateway that starts with
a weak secret or a mistyped origin fails later in ways that are hard to trace
back (FAULT-5). ``load_settings`` raises ``ConfigError``; ``__main__`` turns it
into one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit
from dataclasses import dataclass
from typing import Mapping

from realtime_conformance import contract

MIN_SECRET_BYTES = int(contract.handshake().get("minSecretBytes", 32))
ACCEPTED_ALGORITHMS = ("HS256", "HS384", "HS512")
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_ORIGINS = "http://localhost:3012,http://localhost:3014,http://localhost:3000,http://localhost:3314"
_ORIGIN_RE = re.compile(r"^(https?)://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")
# scheme://*.domain[:port]: "*." is one or more labels; the domain needs no empty label.
_PATTERN_RE = re.compile(r"^(https?)://\*\.([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*)(:[0-9]{1,5})?$")


class ConfigError(ValueError):
    """A bad or missing setting; ``variable`` names it, ``str()`` says how to fix it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    """The gateway's validated configuration (immutable; shared by every module)."""

    host: str
    port: int
    rabbitmq_url: str
    jwt_secret: str
    jwt_algorithm: str
    jwt_tenant_claim: str
    allowed_origins: tuple[str, ...]
    queue: str
    database_path: str
    amqp_prefetch: int
    ping_interval: float
    ping_timeout: float
    log_level: str
    backlog_grace: float = 5.0
    redis_url: str = ""  # empty: one instance, nothing shared; set: cluster mode (see cluster.py)
    request_timeout: float = 30.0  # a connection's HTTP request (head and body) must arrive within this (ROB-6)
    connect_timeout: float = 30.0  # an Engine.IO session must send its Socket.IO CONNECT within this (ROB-6)

    @property
    def clustered(self) -> bool:
        """True when instances share a Socket.IO adapter (REDIS_URL set) and so must share the queue in turn."""
        return bool(self.redis_url)

    @property
    def dlq(self) -> str:
        """Where malformed queue messages go (``<queue>.dlq``)."""
        return f"{self.queue}.dlq"


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int, hint: str) -> int:
    raw = env.get(name, "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"{name} must be an integer from {lo} to {hi}, got {raw!r}: {hint}") from None
    if not lo <= value <= hi:
        raise ConfigError(name, f"{name} must be an integer from {lo} to {hi}, got {value}: {hint}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip() or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ConfigError(
            name, f"{name} must be a number of seconds above 0 and at most 3600, got {raw!r}: e.g. {name}={default:g}"
        )
    return value


def _grace(env: Mapping[str, str]) -> float:
    raw = env.get("BACKLOG_GRACE", "").strip() or "5"
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60:
        raise ConfigError(
            "BACKLOG_GRACE",
            f"BACKLOG_GRACE must be a number of seconds from 0 to 60, got {raw!r}: e.g. BACKLOG_GRACE=5 (0 disables it)",
        )
    return value


def _origins(raw: str) -> tuple[str, ...]:
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ConfigError(
            "ALLOWED_ORIGINS",
            "ALLOWED_ORIGINS is empty: list the portal's origins, comma-separated, "
            f"e.g. ALLOWED_ORIGINS={DEFAULT_ORIGINS}",
        )
    out: list[str] = []
    for item in items:
        if not (_ORIGIN_RE.match(item) or _PATTERN_RE.match(item)):
            raise ConfigError(
                "ALLOWED_ORIGINS",
                f"ALLOWED_ORIGINS entry {item!r} is not an origin: write scheme://host[:port] with no path "
                "and no trailing slash, e.g. http://localhost:3014, or scheme://*.domain[:port] for every "
                "subdomain of domain, e.g. https://*.example.com",
            )
        out.append(item.lower())
    return tuple(dict.fromkeys(out))


REDIS_SCHEMES = ("redis", "rediss", "unix", "valkey", "valkeys")


def _redis_url(env: Mapping[str, str]) -> str:
    raw = env.get("REDIS_URL", "").strip()
    if raw and urlsplit(raw).scheme.lower() not in REDIS_SCHEMES:
        raise ConfigError(
            "REDIS_URL",
            f"REDIS_URL must start with redis://, rediss:// or unix://, got scheme {urlsplit(raw).scheme!r}: "
            "e.g. REDIS_URL=redis://127.0.0.1:6379/0, or leave it empty for a single instance",
        )
    return raw


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment (``os.environ`` by default)."""
    env = os.environ if env is None else env

    secret = env.get("JWT_SECRET", "")
    if not secret:
        raise ConfigError(
            "JWT_SECRET",
            f"JWT_SECRET is not set: set it to the HMAC secret shared with the token issuer "
            f"(at least {MIN_SECRET_BYTES} bytes, e.g. JWT_SECRET=$(openssl rand -hex 32))",
        )
    size = len(secret.encode("utf-8"))
    if size < MIN_SECRET_BYTES:
        raise ConfigError(
            "JWT_SECRET",
            f"JWT_SECRET is too short ({size} bytes): use at least {MIN_SECRET_BYTES} bytes, "
            "e.g. JWT_SECRET=$(openssl rand -hex 32)",
        )

    algorithm = env.get("JWT_ALGORITHM", "").strip() or str(contract.handshake().get("defaultAlgorithm", "HS256"))
    if algorithm not in ACCEPTED_ALGORITHMS:
        raise ConfigError(
            "JWT_ALGORITHM",
            f"JWT_ALGORITHM {algorithm!r} is not accepted: use one of {', '.join(ACCEPTED_ALGORITHMS)} "
            "(the gateway verifies HMAC tokens with JWT_SECRET)",
        )

    claim = env.get("JWT_TENANT_CLAIM", "").strip() or str(contract.handshake().get("defaultTenantClaim", "tenantId"))

    url = env.get("RABBITMQ_URL", "").strip() or "amqp://guest:guest@localhost:5672/"
    if not url.startswith(("amqp://", "amqps://")):
        raise ConfigError(
            "RABBITMQ_URL",
            f"RABBITMQ_URL must start with amqp:// or amqps://, got scheme {urlsplit(url).scheme!r}: "
            "e.g. RABBITMQ_URL=amqp://guest:guest@localhost:5672/",
        )

    queue = env.get("AGENT_PORTAL_EVENTS_QUEUE", "").strip() or contract.default_queue()
    if len(queue.encode("utf-8")) > 250:
        raise ConfigError(
            "AGENT_PORTAL_EVENTS_QUEUE",
            "AGENT_PORTAL_EVENTS_QUEUE is longer than 250 bytes: AMQP queue names (plus '.dlq') must fit in 255",
        )

    host = env.get("HOST", "").strip() or "0.0.0.0"
    log_level = (env.get("LOG_LEVEL", "").strip() or "info").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError("LOG_LEVEL", f"LOG_LEVEL {log_level!r} is not known: use one of {', '.join(LOG_LEVELS)}")

    return Settings(
        host=host,
        port=_int(env, "PORT", 3015, 1, 65535, "set PORT to a free TCP port, e.g. PORT=3015"),
        rabbitmq_url=url,
        jwt_secret=secret,
        jwt_algorithm=algorithm,
        jwt_tenant_claim=claim,
        allowed_origins=_origins(env.get("ALLOWED_ORIGINS", DEFAULT_ORIGINS)),
        queue=queue,
        database_path=env.get("DATABASE_PATH", "").strip() or "./data/gateway.sqlite3",
        amqp_prefetch=_int(env, "AMQP_PREFETCH", 50, 1, 65535, "e.g. AMQP_PREFETCH=50"),
        ping_interval=_seconds(env, "PING_INTERVAL", 25),
        ping_timeout=_seconds(env, "PING_TIMEOUT", 20),
        log_level=log_level,
        backlog_grace=_grace(env),
        redis_url=_redis_url(env),
        request_timeout=_seconds(env, "REQUEST_TIMEOUT", 30),
        connect_timeout=_seconds(env, "CONNECT_TIMEOUT", 30),
    )
