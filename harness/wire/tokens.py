"""Signed test tokens: valid ones and every kind of bad one the AUTH requirements name.

Real JWTs, signed with PyJWT using the configured secret and algorithm; the
malformed kinds (``alg: none``, tampered payload, other algorithm) are built
from their parts so they are exactly what an attacker would send.

The tenant claim may be nested: ``claim_path`` says where it goes. Extra claims
are templates: ``{tenant}``, ``{user}`` and ``{n}`` in their string values
(at any depth) are filled in per token; ``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import jwt

# An RSA key would make "another algorithm" mean RS256; HS256 vs HS512 confusion
# is what a gateway pinned to one HMAC algorithm must refuse, and needs no key.
_OTHER_HMAC = {"HS256": "HS512", "HS384": "HS256", "HS512": "HS256"}

# What extra_claims templates may use: the token's tenant ("" in tokens without one), its
# user (also its ``sub``), and a serial number unique to each token of the run (1, 2, ...).
CLAIM_PLACEHOLDERS = ("tenant", "user", "n")
_SERIAL = itertools.count(1)  # shared by every factory in the process, so {n} never repeats in a run
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def claim_path(name: str) -> tuple[str, ...]:
    """Where a claim named ``name`` goes in a token the harness signs.

    A name with a ``:`` (a URI such as ``https://example.com/tenant`` or ``urn:acme:tenant``)
    is one literal claim, dots and all. Otherwise each unescaped ``.`` goes one object
    deeper (``app_metadata.tenant``), and ``\\.`` is a dot inside a name (``org\\.id`` is the
    top-level claim ``org.id``). Raises ValueError for an empty name or an empty segment.
    """
    if not name:
        raise ValueError("is empty; name the claim that carries the tenant id, e.g. tenantId")
    if ":" in name:
        return (name,)
    parts = [p.replace("\\.", ".") for p in re.split(r"(?<!\\)\.", name)]
    if any(p == "" for p in parts):
        raise ValueError("has an empty segment; separate nested claims with single dots (app_metadata.tenant) "
                         "and write \\. for a dot inside a name (org\\.id)")
    return tuple(parts)


def template_placeholders(value: Any) -> Iterator[str]:
    """Every ``{name}`` in the string values of ``value`` (objects and lists at any depth)."""
    if isinstance(value, str):
        for m in _PLACEHOLDER.finditer(value):
            if m.group(1) is not None:
                yield m.group(1)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from template_placeholders(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from template_placeholders(v)


def render_claims(value: Any, fields: Mapping[str, str]) -> Any:
    """``value`` with every placeholder in its strings replaced (keys are left alone)."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) is None:
                return m.group(0)[0]  # "{{" -> "{", "}}" -> "}"
            return fields[m.group(1)]
        return _PLACEHOLDER.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: render_claims(v, fields) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render_claims(v, fields) for v in value]
    return value


def _set_path(body: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Put ``value`` at ``path``, making (or copying into) objects on the way; None removes it."""
    node = body
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            if value is None:
                return
            child = {}
        node[key] = child = dict(child)
        node = child
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


@dataclass(frozen=True)
class TokenFactory:
    """Makes tokens for tenants as the configured issuer would, and broken variants."""

    secret: str
    algorithm: str = "HS256"
    tenant_claim: str = "tenantId"
    extra_claims: Mapping[str, Any] | None = None
    lifetime_s: int = 3600

    @property
    def tenant_path(self) -> tuple[str, ...]:
        """Where the tenant goes in the payload (see ``claim_path``)."""
        return claim_path(self.tenant_claim)

    def claims(self, tenant: str | None, *, user: str | None = None, **overrides: Any) -> dict[str, Any]:
        """The payload of a token for ``tenant``'s ``user`` (default ``agent-of-<tenant>``, also ``sub``).

        Extra claims are rendered first, then the tenant is put at its path (so it wins over an
        extra claim of the same name), then ``overrides`` (None removes a top-level claim).
        """
        now = int(time.time())
        user = user or (f"agent-of-{tenant}" if tenant else "agent")
        fields = {"tenant": tenant or "", "user": user, "n": str(next(_SERIAL))}
        body: dict[str, Any] = {"sub": user, "iat": now, "exp": now + self.lifetime_s}
        body.update(render_claims(copy.deepcopy(dict(self.extra_claims or {})), fields))
        _set_path(body, self.tenant_path, tenant)
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not None}

    def sign(self, claims: Mapping[str, Any], *, secret: str | None = None, algorithm: str | None = None) -> str:
        with warnings.catch_warnings():  # short test secrets are the point of some tokens
            warnings.simplefilter("ignore")
            return jwt.encode(dict(claims), secret or self.secret, algorithm=algorithm or self.algorithm)

    def valid(self, tenant: str, *, ttl_s: float | None = None, user: str | None = None) -> str:
        """A token the gateway must accept; ``ttl_s`` shortens its life (AUTH-8)."""
        exp = None if ttl_s is None else int(time.time() + ttl_s)
        return self.sign(self.claims(tenant, user=user, **({"exp": exp} if exp else {})))

    def expired(self, tenant: str, *, ago_s: int = 120) -> str:
        now = int(time.time())
        return self.sign(self.claims(tenant, iat=now - 3600, exp=now - ago_s))

    def not_yet_valid(self, tenant: str, *, in_s: int = 600) -> str:
        return self.sign(self.claims(tenant, nbf=int(time.time()) + in_s))

    def wrong_secret(self, tenant: str) -> str:
        return self.sign(self.claims(tenant), secret=self.secret[::-1] + "-not-the-shared-secret")

    def tampered(self, tenant: str, *, to_tenant: str) -> str:
        """A valid token for ``tenant`` whose tenant claim (only) was edited to ``to_tenant``."""
        header, payload, signature = self.valid(tenant).split(".")
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        _set_path(body, self.tenant_path, to_tenant)
        forged = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{header}.{forged}.{signature}"

    def unsigned(self, tenant: str) -> str:
        """``alg: none`` with an empty signature (RFC 8725 2.1)."""
        header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(self.claims(tenant)).encode())
        return f"{header}.{payload}."

    def other_algorithm(self, tenant: str) -> str:
        """Signed with the right secret but another HMAC algorithm than configured."""
        return self.sign(self.claims(tenant), algorithm=_OTHER_HMAC[self.algorithm])

    def without_tenant(self) -> str:
        return self.sign(self.claims(None))

    def empty_tenant(self) -> str:
        return self.sign(self.claims(""))
