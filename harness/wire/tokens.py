"""Signed test tokens: valid ones and every kind of bad one the AUTH requirements name.

Real JWTs, signed with PyJWT using the configured secret and algorithm; the
malformed kinds (``alg: none``, tampered payload, other algorithm) are built
from their parts so they are exactly what an attacker would send.
"""

from __future__ import annotations

import base64
import json
import time
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import jwt

# An RSA key would make "another algorithm" mean RS256; HS256 vs HS512 confusion
# is what a gateway pinned to one HMAC algorithm must refuse, and needs no key.
_OTHER_HMAC = {"HS256": "HS512", "HS384": "HS256", "HS512": "HS256"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class TokenFactory:
    """Makes tokens for tenants as the configured issuer would, and broken variants."""

    secret: str
    algorithm: str = "HS256"
    tenant_claim: str = "tenantId"
    extra_claims: Mapping[str, Any] | None = None
    lifetime_s: int = 3600

    def claims(self, tenant: str | None, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        body: dict[str, Any] = {"sub": f"agent-of-{tenant}" if tenant else "agent", "iat": now, "exp": now + self.lifetime_s}
        body.update(self.extra_claims or {})
        if tenant is not None:
            body[self.tenant_claim] = tenant
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not None}

    def sign(self, claims: Mapping[str, Any], *, secret: str | None = None, algorithm: str | None = None) -> str:
        with warnings.catch_warnings():  # short test secrets are the point of some tokens
            warnings.simplefilter("ignore")
            return jwt.encode(dict(claims), secret or self.secret, algorithm=algorithm or self.algorithm)

    def valid(self, tenant: str, *, ttl_s: float | None = None) -> str:
        """A token the gateway must accept; ``ttl_s`` shortens its life (AUTH-8)."""
        exp = None if ttl_s is None else int(time.time() + ttl_s)
        return self.sign(self.claims(tenant, **({"exp": exp} if exp else {})))

    def expired(self, tenant: str, *, ago_s: int = 120) -> str:
        now = int(time.time())
        return self.sign(self.claims(tenant, iat=now - 3600, exp=now - ago_s))

    def not_yet_valid(self, tenant: str, *, in_s: int = 600) -> str:
        return self.sign(self.claims(tenant, nbf=int(time.time()) + in_s))

    def wrong_secret(self, tenant: str) -> str:
        return self.sign(self.claims(tenant), secret=self.secret[::-1] + "-not-the-shared-secret")

    def tampered(self, tenant: str, *, to_tenant: str) -> str:
        """A valid token for ``tenant`` whose payload was edited to name ``to_tenant``."""
        header, _payload, signature = self.valid(tenant).split(".")
        forged = _b64(json.dumps(self.claims(to_tenant), separators=(",", ":")).encode())
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
