"""Harness settings: one table of options, each a command-line flag, an ini key and an env var.

Precedence: command line, then environment, then ini file, then the default. One exception
merges instead: ``gateway_env`` entries apply in layers (the seed's defaults, then the ini's, then
the environment's, then the command line's), key by key, so ``--gateway-env KEY=VALUE`` changes
one variable and keeps the ini's others; ``KEY=`` removes one.
``resolve`` validates everything at once and raises ``pytest.UsageError``
naming the option, its three spellings and the valid choices, so a typo fails
the run at start instead of half-way through a suite.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import os
import re
import secrets
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

import pytest
from realtime_conformance import contract
from realtime_conformance.harness import capabilities
from realtime_conformance.harness.judging.waivers import WaiverError, Waivers, load as load_waivers
from realtime_conformance.harness.redaction import Redactor, is_secret_name, url_passwords
from realtime_conformance.harness.wire.portal import ReconnectPolicy
from realtime_conformance.harness.wire.tokens import CLAIM_PLACEHOLDERS, claim_path, template_placeholders

ENV_PREFIX = "RTC_"

BROKER_KINDS = ("auto", "process", "container", "external")
REDIS_KINDS = ("auto", "process", "container", "external")
LOCAL_REDIS_IMAGE = "rtc/redis:local"  # scripts/prepare-docker.sh builds it from Debian's redis-server
ALGORITHMS = ("HS256", "HS384", "HS512")
CAPABILITIES = capabilities.NAMES  # registered in harness/capabilities.py, with what each means
BROWSER_MODES = ("auto", "required", "off")
BROWSER_HOSTS = ("localhost", "127.0.0.1")  # the page is served on loopback, so its origin names loopback

# How thorough a run is. Each level fixes the evidence that costs time: MET-3's idle window and the
# Hypothesis examples per generated check. Hypothesis's own profiles (ci, dev) keep deciding how
# examples are drawn (derandomised or not, a database or not); the level decides how many.
GATE_LEVELS: dict[str, dict[str, float]] = {
    "pr": {"idle_window_s": 60.0, "examples": 8},
    "release": {"idle_window_s": 300.0, "examples": 40},
}

SEED_ORIGINS = "http://localhost:3012,http://localhost:3014,http://localhost:3000,http://localhost:3314"

# The environment a harness-started gateway gets; the seed's variable names.
# Placeholders are filled from the run; users add or override entries with
# --gateway-env KEY=TEMPLATE (an empty template removes the variable).
DEFAULT_GATEWAY_ENV: dict[str, str] = {
    "HOST": "{host}",
    "PORT": "{port}",
    "RABBITMQ_URL": "{amqp_url}",
    "JWT_SECRET": "{jwt_secret}",
    "JWT_ALGORITHM": "{jwt_algorithm}",
    "JWT_TENANT_CLAIM": "{tenant_claim}",
    "ALLOWED_ORIGINS": "{allowed_origins}",
    "AGENT_PORTAL_EVENTS_QUEUE": "{queue}",
    # One file for every replica of a target: a cluster shares its read model.
    "DATABASE_PATH": "{shared_dir}/gateway.sqlite3",
    # Empty in single-instance runs: the gateway stays single-instance.
    "REDIS_URL": "{redis_url}",
    "PING_INTERVAL": "1",
    "PING_TIMEOUT": "2",
}
TEMPLATE_FIELDS = ("host", "port", "amqp_url", "jwt_secret", "jwt_algorithm", "tenant_claim",
                   "allowed_origins", "queue", "workdir", "shared_dir", "redis_url", "replica")
MAX_REPLICAS = 8


@dataclass(frozen=True)
class Option:
    """One setting and its three spellings."""

    name: str
    help: str
    default: Any = None
    kind: str = "str"  # str | int | float | bool | list | json | env
    choices: tuple[str, ...] | None = None
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def spellings(self) -> str:
        return f"{self.flag} (ini '{self.name}', env {self.env})"


OPTIONS: tuple[Option, ...] = (
    Option("gateway_url", "URL of a gateway that is already running (http://host:port); a comma list names the "
           "instances of one gateway cluster, each reached directly. Default: start the reference gateway."),
    Option("gateway_cmd", "Command that starts the gateway; the harness runs, restarts and kills it. Default: the reference gateway."),
    Option("gateway_cwd", "Working directory of a harness-started gateway command; a relative path is from the ini file's "
           "folder when set in the ini, else from the current directory. Default: the folder of the ini file that set "
           "gateway_cmd, or the current directory when gateway_cmd came from the command line or environment."),
    Option("gateway_image", "Container image of the gateway (needs a Docker engine; implies --broker container)."),
    Option("gateway_replicas", "How many instances of the gateway the harness starts (command and image targets), all "
           "on one queue, one Redis and one shared folder; clients are spread over them. 2 or more runs the cluster "
           "area (-m cluster); for a URL target it is the number of URLs listed.", 1, kind="int"),
    Option("redis_url", "Redis the gateway replicas share (redis://host:port[/db]); implies --redis external. Default: "
           "with 2 or more replicas, one the harness starts (see --redis); with one, none (the {redis_url} "
           "placeholder is empty) unless --redis names one."),
    Option("redis", "Where the gateway's Redis ({redis_url}) comes from: process (a private redis-server on a free "
           "loopback port), container (--redis-image, needs a Docker engine) or external (--redis-url); chosen, "
           "every harness-started instance gets one, a lone or dedicated instance too (each its own, or the "
           "external one). auto: with 2 or more replicas external when --redis-url is given, a container when the "
           "target is an image, else process; with one instance none ({redis_url} empty: the gateway uses its "
           "own default).", "auto", choices=REDIS_KINDS),
    Option("redis_image", "Redis image for --redis container (scripts/prepare-docker.sh builds rtc/redis:local).",
           LOCAL_REDIS_IMAGE),
    Option("broker", "Where RabbitMQ comes from.", "auto", choices=BROKER_KINDS),
    Option("amqp_url", "AMQP URL of an external broker (with --broker external)."),
    Option("rabbitmq_image", "RabbitMQ image for --broker container.", "rabbitmq:3-management"),
    Option("queue", "Queue the gateway consumes.", contract.default_queue()),
    Option("jwt_secret", "Shared HMAC secret for signing test tokens. Default: a fresh random secret per run (harness-started gateways only).", secret=True),
    Option("jwt_algorithm", "Algorithm the gateway is configured for.", "HS256", choices=ALGORITHMS),
    Option("tenant_claim", "JWT claim that carries the tenant id. Dots nest: app_metadata.tenant signs "
           '{"app_metadata": {"tenant": ...}}; a name with a colon (https://example.com/tenant, urn:acme:tenant) is one '
           "literal claim; \\. is a dot inside a name (org\\.id).", contract.handshake()["defaultTenantClaim"]),
    Option("extra_claims", 'Extra claims every valid token carries, as a JSON object, e.g. {"aud": "agent-portal"}. '
           "String values at any depth are templates: {tenant}, {user} (the token's user, also its sub: "
           "agent-of-<tenant>), {n} (a number unique to each token of the run: 1, 2, ...); {{ and }} are literal braces.",
           "{}", kind="json"),
    Option("socketio_path", "Socket.IO path on the gateway.", "/socket.io/"),
    Option("rest_paths", "REST paths as a JSON object overriding the contract's (keys: stats, refresh, conversations, messages, health).", "{}", kind="json"),
    Option("gateway_env", "Environment for a harness-started gateway: KEY=TEMPLATE entries added to the seed's defaults. "
           "Entries merge key by key: the ini's apply over the defaults, the environment's over those, the command "
           "line's last; KEY= (empty) removes a variable. Placeholders {host} {port} {amqp_url} {jwt_secret} {jwt_algorithm} {tenant_claim} {allowed_origins} {queue} {workdir} "
           "(this instance's folder) {shared_dir} (one folder all replicas of the target share) {redis_url} (empty with "
           "one instance unless --redis names one) {replica} (which replica: 1, 2, ...).", "", kind="env"),
    Option("gateway_startup_timeout", "Seconds a started gateway may take to answer an Engine.IO handshake.", 30.0, kind="float"),
    Option("stop_grace_s", "Seconds a harness-started gateway may take to exit after SIGTERM (FAULT-7): your "
           "deployment's grace period (docker stop's 10 s; Kubernetes' terminationGracePeriodSeconds, 30 s by "
           "default). The harness sends SIGKILL 2 s after it. From 1 to 600.", 10.0, kind="float"),
    Option("silent_close_s", "Seconds within which the gateway must close a client that never completes its HTTP "
           "request or never sends its Socket.IO CONNECT (ROB-6): socket.io's connectTimeout (45 s) and Node's "
           "headersTimeout (60 s) meet the default. From 1 to 600.", 60.0, kind="float"),
    Option("lacks", f"Capabilities the target declares it lacks, comma list of: {', '.join(CAPABILITIES)}. Their requirements report N/A.", "", kind="list", choices=CAPABILITIES),
    Option("allowed_origins", "Origins the gateway allows (comma list of scheme://host[:port]; scheme://*.domain[:port] allows "
           "every subdomain of domain, one or more labels deep, not domain itself); passed to a harness-started gateway.",
           SEED_ORIGINS, kind="list"),
    Option("forbidden_origins", "Origins that must be refused (comma list), tried in addition to the look-alikes generated "
           "for every allowed origin; start the list with '=' to replace the look-alikes (=https://a,https://b).", "", kind="list"),
    Option("latency_budget_ms", "Publish-to-receive budget per delivery (DLV-2).", 1000.0, kind="float"),
    Option("reconnect_policy", "The portal's reconnect policy: attempts, delay and max in ms, jitter.", "attempts=5,delay=1000,max=5000,jitter=0.5"),
    Option("gate_level", "How thorough the run is: pr (every pull request: a 60 s idle window, 8 Hypothesis examples per "
           "generated check) or release (300 s, 40). idle_window_s and examples override the level's values.",
           "pr", choices=tuple(GATE_LEVELS)),
    Option("idle_window_s", "How long MET-3 watches three idle portal tabs for HTTP requests (the seed promises none). "
           "Default: the gate level's (pr 60, release 300).", kind="float"),
    Option("examples", "Hypothesis examples per generated check. Default: the gate level's (pr 8, release 40).", kind="int"),
    Option("conformance_strict", "SHOULD failures fail the run (pytest's own --strict does the same).", False, kind="bool"),
    Option("requirements", "Only run the tests of these requirement IDs (comma list; AREA-* for a whole area, e.g. ROB-*); the rest report SKIPPED.", "", kind="list"),
    Option("report_dir", "Where compliance.html and compliance.json are written.", "reports"),
    Option("waivers", "YAML file of requirement IDs accepted as failing, each with a reason and an expiry date (README: Adopting the gate gradually). Relative to the ini file's folder, else the rootdir."),
    Option("catalogue_version", "The catalogue version this configuration was written for; a run against another version stops at start and lists what changed."),
    Option("browser", "The browser checks (the portal page in Chromium, -m browser): auto (run them when Chromium, "
           "Playwright and npm are here, else SKIPPED with the install command), required (a missing piece is "
           "UNKNOWN: for CI) or off (SKIPPED).", "auto", choices=BROWSER_MODES),
    Option("browser_path", "The Chromium to launch. Default: the first of /usr/bin/chromium, chromium, chromium-browser, "
           "google-chrome on PATH."),
    Option("browser_origin", "The origin the harness serves the portal page at (http://localhost:PORT or "
           "http://127.0.0.1:PORT, a free port on this machine), for a --gateway-url target that allows it. Default: a "
           "free port, whose origin a harness-started gateway is told to allow; a URL target's browser checks are "
           "SKIPPED without it."),
)
BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Settings:
    """Validated harness settings; build with ``resolve``."""

    gateway_url: str | None  # the first instance's URL
    gateway_cmd: str | None
    gateway_image: str | None
    broker: str
    gateway_cwd: str
    amqp_url: str | None
    rabbitmq_image: str
    queue: str
    jwt_secret: str
    jwt_algorithm: str
    tenant_claim: str
    extra_claims: Mapping[str, Any]
    socketio_path: str
    rest_paths: Mapping[str, str]
    gateway_env: Mapping[str, str]
    gateway_startup_timeout: float
    lacks: frozenset[str]
    allowed_origins: tuple[str, ...]
    forbidden_origins: tuple[str, ...]
    latency_budget_ms: float
    reconnect_policy: ReconnectPolicy
    gate_level: str
    idle_window_s: float
    examples: int
    strict: bool
    requirements: frozenset[str]
    report_dir: str
    waivers: Waivers | None = None
    catalogue_version: str | None = None  # the pin; None when unpinned
    sources: Mapping[str, str] = field(default_factory=dict)
    gateway_replicas: int = 1
    redis_url: str | None = None
    gateway_urls: tuple[str, ...] = ()  # every instance of a URL target
    redis: str = "process"  # process, container, external, or none (auto with one instance): auto resolved
    redis_image: str = LOCAL_REDIS_IMAGE
    stop_grace_s: float = 10.0  # the stop bound (FAULT-7)
    silent_close_s: float = 60.0  # the silent-client bound (ROB-6)
    redis_chosen: bool = False  # --redis named a kind: lone and dedicated instances get a Redis too
    browser: str = "auto"
    browser_path: str | None = None
    browser_origin: str | None = None
    # Origins of the page server, added to a harness-started gateway's allowed origins (not to
    # allowed_origins: ORIG-1 and ORIG-2 judge the user's list, not the harness's page).
    page_origins: tuple[str, ...] = ()

    @property
    def gives_redis(self) -> bool:
        """Whether harness-started gateways of the main target get a Redis in ``{redis_url}``."""
        return self.target_kind != "url" and self.redis != "none"

    @property
    def cluster(self) -> bool:
        """Whether the target runs as several instances (the cluster area needs it)."""
        return self.gateway_replicas >= 2

    @property
    def target_kind(self) -> str:
        if self.gateway_url:
            return "url"
        if self.gateway_image:
            return "image"
        return "process"

    @property
    def allowed_origin_examples(self) -> tuple[str, ...]:
        """Concrete origins the allowed entries allow (a ``*.`` pattern gives two): ORIG-1 tries each."""
        return origin_examples(self.allowed_origins)

    @property
    def reference_target(self) -> bool:
        return not (self.gateway_url or self.gateway_cmd or self.gateway_image)

    @property
    def command(self) -> str:
        """The gateway command (the reference gateway by default)."""
        return self.gateway_cmd or f"{shlex.quote(sys.executable)} -m realtime_conformance.gateway"

    def has(self, capability: str) -> bool:
        """Whether the target may be asked for a capability (not declared lacking)."""
        if capability == "restart" and self.target_kind == "url":
            return False
        return capability not in self.lacks

    @functools.cached_property
    def redactor(self) -> Redactor:
        """The one redaction of this run's secrets (see harness.redaction), for every output."""
        literals = [self.jwt_secret]
        for key, value in [*self.gateway_env.items(), *self.extra_claims.items()]:
            if isinstance(value, str):
                if is_secret_name(key) and "{" not in value:
                    literals.append(value)
                literals += url_passwords(value)
        for url in (self.amqp_url, self.redis_url, *self.gateway_urls, self.gateway_cmd):
            literals += url_passwords(url or "")
        return Redactor(literals)

    def redacted(self) -> dict[str, Any]:
        """Settings for the header and the report: secrets shown by length only, the rest redacted."""
        out: dict[str, Any] = {}
        for opt in OPTIONS:
            value = getattr(self, {"conformance_strict": "strict", "gateway_url": "gateway_urls"}.get(opt.name, opt.name))
            if opt.name == "gateway_url" and not value:
                value = None
            if opt.secret and value:
                value = f"*** ({len(value.encode())} bytes, {self.sources.get(opt.name, 'default')})"
            elif opt.name in ("amqp_url", "redis_url") and value:
                value = redact_url(value)
            elif isinstance(value, (frozenset, tuple)):
                value = ",".join(sorted(value)) if isinstance(value, frozenset) else ",".join(value)
            elif isinstance(value, ReconnectPolicy):
                value = (f"attempts={value.attempts},delay={value.delay * 1000:g},"
                         f"max={value.delay_max * 1000:g},jitter={value.randomization:g}")
            elif isinstance(value, Mapping):
                value = json.dumps(self.redactor.value(dict(value)), ensure_ascii=False)
            elif isinstance(value, Waivers):
                value = str(value.path)
            out[opt.name] = self.redactor.value(value)
        return out


def redact_url(url: str) -> str:
    """The URL with its password replaced, for headers and reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


_DEFAULT_PORTS = {"http": 80, "https": 443}
# scheme://host[:port] or scheme://*.domain[:port]; no path, no trailing slash.
_ORIGIN_ENTRY = re.compile(
    r"^(?P<scheme>https?)://(?P<wild>\*\.)?(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"


@dataclass(frozen=True)
class OriginEntry:
    """One allowed_origins entry: an exact origin, or ``scheme://*.domain[:port]``."""

    text: str
    scheme: str
    host: str
    port: int | None
    wildcard: bool

    @property
    def suffix(self) -> str:
        """``:port`` as written, or nothing."""
        return f":{self.port}" if self.port is not None else ""

    def matches(self, origin: str) -> bool:
        """The gateway's rule: exact string equality; ``*.`` stands for one or more DNS labels,
        and scheme, port and the rest of the host stay exact."""
        if not self.wildcard:
            return origin == self.text
        pattern = (re.escape(f"{self.scheme}://") + f"(?:{_LABEL}\\.)+" + re.escape(self.host + self.suffix))
        return re.fullmatch(pattern, origin) is not None

    def examples(self) -> tuple[str, ...]:
        """Concrete origins this entry allows: itself, or for a pattern one and two labels deep."""
        if not self.wildcard:
            return (self.text,)
        return (f"{self.scheme}://app.{self.host}{self.suffix}", f"{self.scheme}://deep.app.{self.host}{self.suffix}")


def parse_origin_entry(text: str) -> OriginEntry | None:
    """An allowed_origins entry, or None when it is neither an origin nor a ``*.`` pattern."""
    m = _ORIGIN_ENTRY.match(text)
    if not m:
        return None
    host, port = m["host"], m["port"]
    if port is not None and not 0 < int(port) < 65536:
        return None
    labels = host.split(".")
    if m["wild"] and (host.startswith("[") or any(not l for l in labels)):
        return None  # a pattern needs a domain name after "*.", e.g. https://*.example.com
    return OriginEntry(text, m["scheme"], host, int(port) if port is not None else None, bool(m["wild"]))


def allowed_by(origin: str, allowed: Sequence[str]) -> str | None:
    """The allowed_origins entry that allows ``origin``, if any."""
    for text in allowed:
        entry = parse_origin_entry(text)
        if entry is not None and entry.matches(origin):
            return text
    return None


def origin_examples(allowed: Sequence[str]) -> tuple[str, ...]:
    """Concrete origins the allowed entries allow: what ORIG-1 tries, in order."""
    out: list[str] = []
    for text in allowed:
        entry = parse_origin_entry(text)
        out += entry.examples() if entry else [text]
    return tuple(dict.fromkeys(out))


def lookalike_origins(origin: str) -> tuple[str, ...]:
    """Origins that resemble an allowed entry but must not match it (ORIG-2).

    For an exact origin: the other scheme, the next port, a longer port, the host inside a
    longer host, the host as a prefix, a trailing slash. For a ``*.`` pattern the same
    tricks on a matching subdomain, plus the registrable-domain ones:
    the bare apex (``*.`` needs at least one label), ``evil`` glued to the domain, a subdomain of
    that, and the allowed domain followed by another one.
    """
    entry = parse_origin_entry(origin)
    if entry is None:
        return ("null", "https://evil.example")
    scheme, host, port, p = entry.scheme, entry.host, entry.port, entry.suffix
    other_scheme = "https" if scheme == "http" else "http"
    next_port = f":{(port or _DEFAULT_PORTS[scheme]) + 1}"
    longer_port = f":{port}0" if port is not None and port * 10 < 65536 else ""
    if entry.wildcard:
        sample = f"app.{host}"
        candidates = [
            f"{other_scheme}://{sample}{p}",
            f"{scheme}://{sample}{next_port}",
            *([f"{scheme}://{sample}{longer_port}"] if longer_port else []),
            f"{scheme}://{host}{p}",
            f"{scheme}://evil{host}{p}",
            f"{scheme}://app.evil{host}{p}",
            f"{scheme}://{host}.evil.test{p}",
            f"{scheme}://{sample}.evil.test{p}",
            f"{scheme}://{sample}{p}/",
        ]
    else:
        candidates = [
            f"{other_scheme}://{host}{p}",
            f"{scheme}://{host}{next_port}",
            *([f"{scheme}://{host}{longer_port}"] if longer_port else []),
            f"{scheme}://{host}.evil.example{p}",
            f"{scheme}://evil{host}{p}",
            f"{scheme}://{host}-evil.example{p}",
            f"{scheme}://{host}{p}/",
        ]
    candidates += ["null", "https://evil.example"]
    return tuple(dict.fromkeys(c for c in candidates if c != origin))


def default_forbidden_origins(allowed: Sequence[str]) -> tuple[str, ...]:
    """Look-alikes of every allowed entry, minus any origin another entry allows."""
    out = (o for entry in allowed for o in lookalike_origins(entry))
    return tuple(dict.fromkeys(o for o in out if allowed_by(o, allowed) is None))


def add_options(parser: pytest.Parser) -> None:
    """Register every option as a flag in the 'realtime conformance' group and as an ini key."""
    group = parser.getgroup("realtime-conformance", "realtime conformance harness")
    for opt in OPTIONS:
        if opt.kind == "bool":
            group.addoption(opt.flag, action="store_true", default=None, dest=opt.name,
                            help=f"{opt.help} [env {opt.env}]")
        elif opt.kind == "env":
            group.addoption(opt.flag, action="append", default=None, dest=opt.name, metavar="KEY=TEMPLATE",
                            help=f"{opt.help} Repeatable. [env {opt.env}, ';'-separated]")
        else:
            group.addoption(opt.flag, action="store", default=None, dest=opt.name,
                            choices=None, help=f"{opt.help} [env {opt.env}]")
        ini_type = {"bool": "bool", "env": "linelist"}.get(opt.kind, "string")
        parser.addini(opt.name, help=opt.help, type=ini_type, default=None)


def _env_layers(opt: Option, config: pytest.Config, environ: Mapping[str, str]) -> tuple[list[str], str]:
    """Every spelling's KEY=TEMPLATE entries, lowest precedence first (ini, environment, command
    line), and where they came from: applied in order, a later entry overrides an earlier one's key."""
    entries: list[str] = []
    used: list[str] = []
    layers = ((config.getini(opt.name), "ini"),
              ([v for v in environ.get(opt.env, "").split(";") if v.strip()], "environment"),
              (config.getoption(opt.name, default=None), "command line"))
    for given, source in layers:
        if given not in (None, [], ""):
            entries += [str(v) for v in given]
            used.append(source)
    return entries, " + ".join(used) or "default"


def _raw_values(config: pytest.Config, environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        if opt.kind == "env":
            raw[opt.name], sources[opt.name] = _env_layers(opt, config, environ)
            continue
        cli = config.getoption(opt.name, default=None)
        if cli not in (None, [], ""):
            raw[opt.name], sources[opt.name] = cli, "command line"
            continue
        if opt.env in environ and environ[opt.env] != "":
            value: Any = environ[opt.env]
            if opt.kind == "env":
                value = [v for v in value.split(";") if v.strip()]
            raw[opt.name], sources[opt.name] = value, "environment"
            continue
        ini = config.getini(opt.name)
        if ini not in (None, [], ""):
            raw[opt.name], sources[opt.name] = ini, "ini"
            continue
        raw[opt.name], sources[opt.name] = opt.default, "default"
    return raw, sources


def _fail(opt: Option, value: Any, why: str) -> pytest.UsageError:
    return pytest.UsageError(f"{opt.spellings}: {value!r} {why}")


def _parse_list(opt: Option, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = tuple(i.strip() for i in items if str(i).strip())
    if opt.choices:
        bad = [i for i in out if i not in opt.choices]
        if bad:
            raise _fail(opt, ",".join(bad), f"is not a valid choice; choose from: {', '.join(opt.choices)}")
    return out


def _expand_areas(opt: Option, items: tuple[str, ...]) -> list[str]:
    """``ROB-*`` (an area wildcard) is every active ID of that area; other items are kept as given."""
    from realtime_conformance.harness.judging.catalogue import ACTIVE, AREAS

    out: list[str] = []
    for item in items:
        if item.endswith("-*"):
            area = item[:-2].upper()
            if area not in AREAS:
                raise _fail(opt, item, f"names no area; areas: {', '.join(AREAS)} (e.g. ROB-*)")
            out += [r.id for r in ACTIVE if r.area == area]
        else:
            out.append(item)
    return out


def _parse_json_object(opt: Option, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise _fail(opt, value, f"is not valid JSON ({exc.msg}); give an object such as '{{\"aud\": \"agent-portal\"}}'") from None
    if not isinstance(parsed, dict):
        raise _fail(opt, value, "must be a JSON object ({...})")
    return parsed


def _parse_number(opt: Option, value: Any, cast: Callable[[Any], Any], minimum: float) -> Any:
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise _fail(opt, value, f"is not a number; give e.g. {opt.default}") from None
    if not math.isfinite(number):
        raise _fail(opt, value, f"is not a finite number; give e.g. {opt.default}")
    if number < minimum:
        raise _fail(opt, value, f"must be at least {minimum:g}")
    return number


MAX_STOP_GRACE_S = 600.0


def _stop_grace(opt: Option, value: Any) -> float:
    """The stop bound: at least 1 s, and at most MAX_STOP_GRACE_S (a run waits that long per hung stop)."""
    seconds = float(_parse_number(opt, value, float, 1))
    if seconds > MAX_STOP_GRACE_S:
        raise _fail(opt, value, f"must be at most {MAX_STOP_GRACE_S:g} (seconds); give your deployment's grace period, "
                                "e.g. 30 for Kubernetes' default")
    return seconds


MAX_SILENT_CLOSE_S = 600.0


def _silent_close(opt: Option, value: Any) -> float:
    """The silent-client bound: at least 1 s, at most MAX_SILENT_CLOSE_S (ROB-6's evidence waits up to it)."""
    seconds = float(_parse_number(opt, value, float, 1))
    if seconds > MAX_SILENT_CLOSE_S:
        raise _fail(opt, value, f"must be at most {MAX_SILENT_CLOSE_S:g} (seconds); give how long your gateway may "
                                "keep a client that says nothing, e.g. 60")
    return seconds


def _level_value(opt: Option, value: Any, cast: Callable[[Any], Any], level: str) -> Any:
    """The option as given, else the gate level's value for it."""
    default = GATE_LEVELS[level][opt.name]
    if value in (None, ""):
        return cast(default)
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise _fail(opt, value, f"is not a number; give e.g. {cast(default)} (the {level} level's)") from None
    if not math.isfinite(number) or number < 1:
        raise _fail(opt, value, f"must be a number of at least 1; the {level} level uses {cast(default)}")
    return number


def _parse_bool(opt: Option, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise _fail(opt, value, "is not a boolean; use true or false")


def _parse_env(opt: Option, entries: Any) -> dict[str, str]:
    env = dict(DEFAULT_GATEWAY_ENV)
    for entry in entries or []:
        key, sep, template = str(entry).partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise _fail(opt, entry, "is not KEY=TEMPLATE; e.g. --gateway-env AMQP_URL={amqp_url}")
        for name in re.findall(r"{([^{}]*)}", template):
            if name not in TEMPLATE_FIELDS:
                raise _fail(opt, entry, f"uses the unknown placeholder {{{name}}}; known: "
                            + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS))
        if template == "":
            env.pop(key, None)
        else:
            env[key] = template
    return env


def _parse_policy(opt: Option, value: str) -> ReconnectPolicy:
    fields: dict[str, float] = {}
    for part in str(value).split(","):
        key, sep, number = part.partition("=")
        key = key.strip()
        if not sep or key not in ("attempts", "delay", "max", "jitter"):
            raise _fail(opt, value, "must look like attempts=5,delay=1000,max=5000,jitter=0.5")
        try:
            fields[key] = float(number)
        except ValueError:
            raise _fail(opt, value, f"has a non-number for {key}") from None
    policy = ReconnectPolicy(
        attempts=int(fields.get("attempts", 5)),
        delay=fields.get("delay", 1000) / 1000,
        delay_max=fields.get("max", 5000) / 1000,
        randomization=fields.get("jitter", 0.5),
    )
    if policy.attempts < 1 or policy.delay <= 0 or policy.delay_max < policy.delay or not 0 <= policy.randomization < 1:
        raise _fail(opt, value, "needs attempts >= 1, 0 < delay <= max, 0 <= jitter < 1")
    return policy


def _forbidden_origins(opt: Option, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The generated look-alikes plus the listed origins; a leading '=' replaces the look-alikes."""
    given = _parse_list(opt, value)
    replace = bool(given) and given[0].startswith("=")
    if replace:
        given = tuple(i for i in (given[0][1:].strip(), *given[1:]) if i)
        if not given:
            raise _fail(opt, value, "replaces the generated look-alikes with nothing; list origins after the '=', "
                        "e.g. '=https://evil.example,null', or drop the '=' to add to the look-alikes")
    for origin in given:
        if origin.startswith("="):
            raise _fail(opt, origin, "has '=' inside the list; only a leading '=' (before the first origin) "
                        "replaces the generated look-alikes")
        if "*" in origin:
            raise _fail(opt, origin, "is a pattern; forbidden origins are sent as Origin headers, so list "
                        "concrete origins such as https://app.evil.example")
        entry = allowed_by(origin, allowed)
        if entry is not None:
            raise _fail(opt, origin, f"is allowed by the allowed_origins entry {entry!r}; an origin cannot be both: "
                        "remove it from one of the two lists")
    generated = () if replace else default_forbidden_origins(allowed)
    return tuple(dict.fromkeys((*given, *generated)))


def _claims(claim_opt: Option, extra_opt: Option, raw: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The tenant claim (its path must parse) and the extra-claims templates (known placeholders only)."""
    claim = str(raw[claim_opt.name]).strip()
    try:
        path = claim_path(claim)
    except ValueError as exc:
        raise _fail(claim_opt, claim, str(exc)) from None
    extra = _parse_json_object(extra_opt, raw[extra_opt.name])
    for name in template_placeholders(extra):
        if name not in CLAIM_PLACEHOLDERS:
            raise _fail(extra_opt, raw[extra_opt.name], f"uses the unknown placeholder {{{name}}}; known: "
                        + ", ".join("{" + f + "}" for f in CLAIM_PLACEHOLDERS) + " (write {{ and }} for literal braces)")
    node: Any = extra
    for depth, key in enumerate(path[:-1]):
        if not isinstance(node, Mapping) or key not in node:
            break
        node = node[key]
        if not isinstance(node, Mapping):
            raise _fail(claim_opt, claim, f"nests the tenant inside {'.'.join(path[:depth + 1])!r}, which "
                        f"{extra_opt.flag} sets to {node!r}; make that claim an object, or escape the dot (\\.) "
                        "if the claim's name contains one")
    return claim, extra


def _gateway_cwd(config: pytest.Config, opt: Option, raw: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """Where a harness-started gateway runs: relative commands in an ini work from wherever pytest runs."""
    ini_dir = Path(config.inipath).parent if config.inipath else None
    here = Path(config.invocation_params.dir)
    value = raw[opt.name]
    if value:
        base = ini_dir if sources[opt.name] == "ini" and ini_dir else here
        folder = base / Path(str(value)).expanduser()
        if not folder.is_dir():
            where = "the ini file's folder" if base is ini_dir else "the current directory"
            raise _fail(opt, str(value), f"is not an existing folder ({folder}); give the folder the gateway command "
                        f"runs in (a relative path is from {where})")
    else:
        folder = ini_dir if sources["gateway_cmd"] == "ini" and ini_dir else here
    return str(folder.resolve())


def _check_url(opt: Option, value: str, schemes: tuple[str, ...], port: int = 3015) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise _fail(opt, value, f"is not a URL with scheme {' or '.join(schemes)}; e.g. {schemes[0]}://127.0.0.1:{port}")
    return value


def resolve(config: pytest.Config, environ: Mapping[str, str] | None = None) -> Settings:
    """Validate all options and build the Settings, or raise pytest.UsageError."""
    environ = os.environ if environ is None else environ
    raw, sources = _raw_values(config, environ)
    o = BY_NAME

    broker = str(raw["broker"])
    if broker not in BROKER_KINDS:
        raise _fail(o["broker"], broker, f"is not a valid choice; choose from: {', '.join(BROKER_KINDS)}")
    algorithm = str(raw["jwt_algorithm"])
    if algorithm not in ALGORITHMS:
        raise _fail(o["jwt_algorithm"], algorithm, f"is not a valid choice; choose from: {', '.join(ALGORITHMS)}")

    targets = [n for n in ("gateway_url", "gateway_cmd", "gateway_image") if raw[n]]
    if len(targets) > 1:
        raise pytest.UsageError(
            "give at most one target: " + " and ".join(o[n].flag for n in targets) + " were both set "
            f"(from {', '.join(sources[n] for n in targets)})"
        )
    gateway_urls = tuple(_check_url(o["gateway_url"], url, ("http", "https"))
                         for url in _parse_list(o["gateway_url"], raw["gateway_url"] or ""))
    gateway_url = gateway_urls[0] if gateway_urls else None
    replicas = _replicas(o["gateway_replicas"], raw["gateway_replicas"], sources["gateway_replicas"], gateway_urls)
    redis_url = _check_url(o["redis_url"], str(raw["redis_url"]).strip(), ("redis", "rediss"), 6379) if raw["redis_url"] else None
    redis = _redis_kind(o, raw, sources, redis_url, replicas, bool(gateway_urls))
    amqp_url = _check_url(o["amqp_url"], raw["amqp_url"], ("amqp", "amqps")) if raw["amqp_url"] else None
    if broker == "external" and not amqp_url:
        raise pytest.UsageError(f"--broker external needs {o['amqp_url'].spellings}, e.g. amqp://guest:guest@127.0.0.1:5672/")
    if amqp_url and broker == "auto":
        broker = "external"
        sources["broker"] = f"implied by amqp_url ({sources['amqp_url']})"
    if raw["gateway_image"] and broker in ("auto", "process"):
        if broker == "process":
            raise pytest.UsageError("--gateway-image runs the gateway in a container, which cannot reach a "
                                    "--broker process node; use --broker container or --broker external")
        broker = "container"
        sources["broker"] = "implied by gateway_image"
    if broker == "auto":
        broker, why = detect_broker(environ)
        sources["broker"] = f"auto: {why}"

    secret = raw["jwt_secret"]
    if not secret:
        if gateway_url:
            raise pytest.UsageError(f"--gateway-url needs the secret your gateway verifies tokens with: {o['jwt_secret'].spellings}")
        secret = secrets.token_urlsafe(48)
        sources["jwt_secret"] = "generated for this run"
    need = {"HS256": 32, "HS384": 48, "HS512": 64}[algorithm]
    if len(str(secret).encode()) < need:
        raise _fail(o["jwt_secret"], "***", f"is {len(str(secret).encode())} bytes; {algorithm} secrets need at least "
                    f"{need} bytes (RFC 7518 3.2)")

    rest_paths = dict(contract.rest_paths())
    overrides = _parse_json_object(o["rest_paths"], raw["rest_paths"])
    unknown = sorted(set(overrides) - set(rest_paths))
    if unknown:
        raise _fail(o["rest_paths"], ",".join(unknown), f"is not a REST path key; known: {', '.join(rest_paths)}")
    rest_paths.update({k: str(v) for k, v in overrides.items()})

    allowed = _parse_list(o["allowed_origins"], raw["allowed_origins"])
    if not allowed:
        raise _fail(o["allowed_origins"], raw["allowed_origins"], "is empty; list at least one origin the gateway allows")
    for origin in allowed:
        if parse_origin_entry(origin) is None:
            raise _fail(o["allowed_origins"], origin, "is not an origin; write scheme://host[:port] with no path, "
                        "or scheme://*.domain[:port] for its subdomains, e.g. http://localhost:3012,https://*.example.com")
    forbidden = _forbidden_origins(o["forbidden_origins"], raw["forbidden_origins"], allowed)

    tenant_claim, extra_claims = _claims(o["tenant_claim"], o["extra_claims"], raw)

    queue = str(raw["queue"]).strip()
    if not queue or len(queue.encode()) > 255:
        raise _fail(o["queue"], raw["queue"], "must be a queue name of 1 to 255 bytes")

    level = str(raw["gate_level"]).strip().lower()
    if level not in GATE_LEVELS:
        raise _fail(o["gate_level"], raw["gate_level"], f"is not a gate level; choose from: {', '.join(GATE_LEVELS)} "
                    "(pr for every pull request, release before a release)")

    strict = _parse_bool(o["conformance_strict"], raw["conformance_strict"]) or bool(config.getoption("strict", False))
    from realtime_conformance.harness.judging.catalogue import BY_ID  # local: settings must not depend on the catalogue at import

    requirement_ids = frozenset(_expand_areas(o["requirements"], _parse_list(o["requirements"], raw["requirements"])))
    unknown_ids = sorted(requirement_ids - set(BY_ID))
    if unknown_ids:
        raise _fail(o["requirements"], ",".join(unknown_ids), "is not a requirement ID; see CONFORMANCE.md (e.g. DLV-1,ISO-1)")
    pin = _check_catalogue_version(o["catalogue_version"], raw["catalogue_version"], sources["catalogue_version"])
    waivers = _load_waivers(config, o["waivers"], raw["waivers"], sources["waivers"])

    return Settings(
        gateway_url=gateway_url,
        gateway_cmd=raw["gateway_cmd"] or None,
        gateway_image=raw["gateway_image"] or None,
        broker=broker,
        gateway_cwd=_gateway_cwd(config, o["gateway_cwd"], raw, sources),
        amqp_url=amqp_url,
        rabbitmq_image=str(raw["rabbitmq_image"]),
        queue=queue,
        jwt_secret=str(secret),
        jwt_algorithm=algorithm,
        tenant_claim=tenant_claim,
        extra_claims=extra_claims,
        socketio_path=("/" + str(raw["socketio_path"]).strip("/") + "/").replace("//", "/"),
        rest_paths=rest_paths,
        gateway_env=_parse_env(o["gateway_env"], raw["gateway_env"]),
        gateway_startup_timeout=_parse_number(o["gateway_startup_timeout"], raw["gateway_startup_timeout"], float, 1),
        stop_grace_s=_stop_grace(o["stop_grace_s"], raw["stop_grace_s"]),
        silent_close_s=_silent_close(o["silent_close_s"], raw["silent_close_s"]),
        lacks=frozenset(_parse_list(o["lacks"], raw["lacks"])),
        allowed_origins=allowed,
        forbidden_origins=forbidden,
        latency_budget_ms=_parse_number(o["latency_budget_ms"], raw["latency_budget_ms"], float, 1),
        reconnect_policy=_parse_policy(o["reconnect_policy"], raw["reconnect_policy"]),
        gate_level=level,
        idle_window_s=_level_value(o["idle_window_s"], raw["idle_window_s"], float, level),
        examples=int(_level_value(o["examples"], raw["examples"], int, level)),
        strict=strict,
        requirements=requirement_ids,
        report_dir=str(raw["report_dir"]),
        waivers=waivers,
        catalogue_version=pin,
        sources=sources,
        gateway_replicas=replicas,
        redis_url=redis_url,
        gateway_urls=gateway_urls,
        redis=redis,
        redis_image=str(raw["redis_image"]).strip() or LOCAL_REDIS_IMAGE,
        redis_chosen=str(raw["redis"]).strip().lower() != "auto",
        browser=_browser_mode(o["browser"], raw["browser"]),
        browser_path=str(raw["browser_path"]).strip() or None if raw["browser_path"] else None,
        browser_origin=_browser_origin(o["browser_origin"], raw["browser_origin"]),
    )


def _browser_mode(opt: Option, value: Any) -> str:
    mode = str(value).strip().lower()
    if mode not in BROWSER_MODES:
        raise _fail(opt, value, f"is not a valid choice; choose from: {', '.join(BROWSER_MODES)} (auto runs the browser "
                    "checks where Chromium and npm are installed, required insists, off skips them)")
    return mode


def _browser_origin(opt: Option, value: Any) -> str | None:
    """The page's origin for a URL target: loopback, a port, no path (the harness serves the page there)."""
    if value in (None, ""):
        return None
    text = str(value).strip().rstrip("/")
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or parts.hostname not in BROWSER_HOSTS or not port or parts.path or parts.query:
        raise _fail(opt, value, "is not an origin the harness can serve the page at; write http://localhost:PORT or "
                    "http://127.0.0.1:PORT with a port free on this machine, one your gateway's allowed origins list")
    return f"http://{parts.hostname}:{port}"


DOCKER_SOCKET = Path("/var/run/docker.sock")
# One ping per engine address and process: in-process pytest runs (the harness's own tests) would
# otherwise wait for a slow engine once each.
_DOCKER_PROBES: dict[str, bool] = {}


def detect_broker(environ: Mapping[str, str]) -> tuple[str, str]:
    """What ``--broker auto`` picks on this machine, and why: a Docker engine that answers, else a
    private node of the installed rabbitmq-server. Neither: ``auto`` stays, and starting the target
    says what to install. The Docker client is only imported when an engine may be there."""
    from realtime_conformance.harness.providers.broker import RABBITMQ_SERVER  # local: keeps settings light

    docker_note = "no Docker engine configured"
    host = environ.get("DOCKER_HOST") or ""
    if host or DOCKER_SOCKET.exists():
        from realtime_conformance.harness.providers import containers as _containers

        if host not in _DOCKER_PROBES:
            _DOCKER_PROBES[host] = _containers.docker_available()
        if _DOCKER_PROBES[host]:
            return "container", "a Docker engine answered"
        docker_note = "the Docker engine did not answer"
    if RABBITMQ_SERVER.exists():
        return "process", f"{docker_note}; rabbitmq-server is installed"
    return "auto", f"{docker_note} and rabbitmq-server is not installed"


def _redis_kind(o: Mapping[str, Option], raw: Mapping[str, Any], sources: dict[str, str], redis_url: str | None,
                replicas: int, url_target: bool) -> str:
    """How the gateway's Redis is got; ``auto`` resolved: none for one instance (or a URL target),
    else the URL's, a container for an image target, else a process."""
    kind = str(raw["redis"]).strip().lower()
    if kind not in REDIS_KINDS:
        raise _fail(o["redis"], raw["redis"], f"is not a valid choice; choose from: {', '.join(REDIS_KINDS)}")
    if kind == "external" and not redis_url:
        raise pytest.UsageError(f"--redis external needs {o['redis_url'].spellings}, e.g. redis://127.0.0.1:6390/0")
    if kind in ("process", "container") and redis_url:
        raise pytest.UsageError(f"--redis {kind} starts a Redis of the harness's own, but --redis-url names one to use "
                                f"(from {sources['redis_url']}): drop --redis-url, or use --redis external")
    image = bool(raw["gateway_image"])
    if image and kind == "process":
        raise pytest.UsageError("--gateway-image runs the gateway in a container, which cannot reach a --redis process "
                                "server on the host's loopback; use --redis container or --redis external --redis-url URL")
    if kind == "auto" and (replicas < 2 or url_target):
        kind = "none"
        sources["redis"] = ("auto: a URL target's Redis is its own" if url_target else
                            "auto: one instance gets no Redis" + (" (--redis-url is for 2 or more replicas, or "
                                                                  "with --redis external)" if redis_url else ""))
    if kind == "auto":
        if redis_url:
            kind, sources["redis"] = "external", f"implied by redis_url ({sources['redis_url']})"
        elif image:
            kind, sources["redis"] = "container", "implied by gateway_image"
        else:
            kind = "process"
    return kind


def _replicas(opt: Option, value: Any, source: str, urls: tuple[str, ...]) -> int:
    """How many instances the target has: as asked, or as many as the URLs listed."""
    count = _parse_number(opt, value, int, 1)
    if count > MAX_REPLICAS:
        raise _fail(opt, value, f"is more than this harness starts ({MAX_REPLICAS}); 2 or 3 show every cluster defect")
    if urls and source == "default":
        return len(urls)
    if urls and count != len(urls):
        raise _fail(opt, value, f"does not match the {len(urls)} URL(s) --gateway-url lists; a URL target's "
                    "instances are its URLs: list one per instance, or drop --gateway-replicas")
    return count


def _check_catalogue_version(opt: Option, value: Any, source: str) -> str | None:
    """The pinned catalogue version, if it is the installed one; otherwise say what changed and how to accept it."""
    from realtime_conformance.harness.judging import catalogue as _catalogue

    if value in (None, ""):
        return None
    pin = str(value).strip()
    installed = _catalogue.CATALOGUE_VERSION
    if pin == installed:
        return pin
    try:
        added, retired = _catalogue.changes_since(pin)
    except KeyError:
        known = ", ".join(c.version for c in _catalogue.CHANGELOG)
        raise _fail(opt, pin, f"is not a catalogue version this harness knows (it knows {known}; installed: "
                    f"{installed}); if your pin is newer, upgrade realtime-conformance, else pin {installed}") from None
    where = {"command line": f"--catalogue-version {installed}", "environment": f"{opt.env}={installed}"}.get(
        source, f"{opt.name} = {installed} in the ini file")
    raise _fail(opt, pin, f"is pinned, but the installed catalogue is version {installed}. Since version {pin}: "
                f"added {_catalogue.compact(added) or 'none'}; retired {_catalogue.compact(retired) or 'none'}. "
                f"Review them in CONFORMANCE.md, then accept the upgrade by updating the pin: {where}")


def _load_waivers(config: pytest.Config, opt: Option, value: Any, source: str) -> Waivers | None:
    """The validated waiver file; a relative path resolves against the ini file's folder, else the rootdir."""
    if value in (None, ""):
        return None
    path = Path(str(value).strip()).expanduser()
    if not path.is_absolute():
        base = Path(config.inipath).parent if source == "ini" and config.inipath else Path(config.rootpath)
        path = base / path
    try:
        return load_waivers(path)
    except WaiverError as exc:
        raise pytest.UsageError(f"{opt.spellings}: {exc}") from None


NO_REDIS = "no Redis given to the gateway: it will use its own default"


def redis_line(settings: Settings) -> str:
    """Where the gateway's Redis comes from, in a few words (the URL's password redacted)."""
    if settings.target_kind == "url":
        return "none (URL target)"
    if settings.redis == "none":
        return "none"
    if settings.redis == "external" and settings.redis_url:
        return f"external {redact_url(settings.redis_url)}"
    if settings.redis == "container":
        return f"container {settings.redis_image}"
    return "private redis-server"


def _lone_redis(settings: Settings) -> str:
    """The header's word on Redis for one instance: which one it gets, or that it gets none and so
    falls back to whatever its own default is (often localhost:6379, shared with anything there)."""
    uses = [key for key, template in settings.gateway_env.items() if "{redis_url}" in template]
    if settings.redis == "none":
        where = (f"{{redis_url}} is empty in {', '.join(uses)}" if uses else "no gateway_env entry uses {redis_url}")
        fix = ("--redis external gives it the one --redis-url names" if settings.redis_url else
               "--redis process or --redis container gives it one of the harness's own")
        return f"redis=none: {NO_REDIS} ({where}; {fix})"
    given = f"in {', '.join(uses)}" if uses else "in {redis_url}, which no gateway_env entry uses"
    return (f"redis={redis_line(settings)} given to the gateway {given}; each dedicated instance gets "
            + ("the same one" if settings.redis == "external" else "one of its own"))


def browser_line(settings: Settings) -> str:
    """The browser checks' mode, Chromium and page origin, in a few words."""
    if settings.browser == "off":
        return "off (--browser off)"
    where = settings.browser_origin or ("none: give --browser-origin" if settings.target_kind == "url"
                                        else "a free loopback port")
    path = settings.browser_path or "looked up: /usr/bin/chromium, chromium, chromium-browser, google-chrome"
    return f"{settings.browser} (Chromium {path}; page origin {where})"


def header_lines(settings: Settings) -> list[str]:
    """Lines for pytest's header: what is being judged, against what, how strictly."""
    target = {"url": settings.gateway_url, "image": settings.gateway_image, "process": settings.command}[settings.target_kind]
    where = f" (cwd {settings.gateway_cwd})" if settings.target_kind == "process" else ""
    lines = [
        f"realtime-conformance: target={settings.target_kind} {target}{where}",
        f"realtime-conformance: broker={settings.broker} queue={settings.queue} budget={settings.latency_budget_ms:g} ms "
        f"strict={settings.strict} report_dir={settings.report_dir}",
    ]
    if settings.sources.get("broker", "").startswith("auto"):
        lines.append(f"realtime-conformance: broker={settings.broker} chosen by --broker auto "
                     f"({settings.sources['broker'].removeprefix('auto: ')})")
    if settings.cluster:
        lines.append(f"realtime-conformance: {settings.gateway_replicas} gateway replicas, redis={redis_line(settings)}")
    elif settings.target_kind != "url":
        lines.append(f"realtime-conformance: {_lone_redis(settings)}")
    from realtime_conformance.harness.judging.catalogue import CATALOGUE_VERSION

    pinned = "pinned" if settings.catalogue_version else "not pinned: set catalogue_version to pin it"
    lines.append(f"realtime-conformance: catalogue version {CATALOGUE_VERSION} ({pinned})")
    lines.append(f"realtime-conformance: gate level {settings.gate_level} (idle window {settings.idle_window_s:g} s, "
                 f"{settings.examples} Hypothesis examples per generated check)")
    if settings.target_kind != "url":
        from realtime_conformance.harness.providers.gateway import STOP_MARGIN_S

        lines.append(f"realtime-conformance: graceful stop bound {settings.stop_grace_s:g} s (FAULT-7; SIGKILL "
                     f"{settings.stop_grace_s + STOP_MARGIN_S:g} s after SIGTERM)")
        lines.append(f"realtime-conformance: silent-client bound {settings.silent_close_s:g} s (ROB-6: a request never "
                     "completed, an Engine.IO session that never sends CONNECT)")
    if settings.waivers is not None:
        today = datetime.date.today()
        expired = [w.id for w in settings.waivers.entries if w.expired(today)]
        lines.append(f"realtime-conformance: {len(settings.waivers.entries)} waiver(s) from {settings.waivers.path}"
                     + (f"; expired: {', '.join(expired)}" if expired else ""))
    lines.append(f"realtime-conformance: browser checks {browser_line(settings)}")
    non_default = {k: v for k, v in settings.redacted().items()
                   if not settings.sources.get(k, "default").startswith(("default", "auto"))}
    if non_default:
        lines.append("realtime-conformance: set " + ", ".join(f"{k}={v}" for k, v in sorted(non_default.items())))
    return [settings.redactor.text(line) for line in lines]
