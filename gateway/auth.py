"""JWT verification shared by the Socket.IO handshake and the REST endpoints.

One function, ``verify_token``, so both doors apply the same rules: the
algorithm is pinned to JWT_ALGORITHM (``alg: none`` and algorithm confusion are
refused before any key is used, RFC 8725), exp and nbf are enforced with zero
leeway, and the tenant comes only from the configured claim. Failures raise
``AuthError`` with one of the contract's refusal codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import jwt

from realtime_conformance import contract

from .config import Settings

TOKEN_MISSING = "token_missing"
TOKEN_INVALID = "token_invalid"
TOKEN_ALGORITHM = "token_algorithm"
TOKEN_EXPIRED = "token_expired"
TOKEN_NOT_YET_VALID = "token_not_yet_valid"
TENANT_MISSING = "tenant_missing"

assert {TOKEN_MISSING, TOKEN_INVALID, TOKEN_ALGORITHM, TOKEN_EXPIRED, TOKEN_NOT_YET_VALID, TENANT_MISSING} <= set(
    contract.refusal_codes()
), "the contract's refusal codes changed; update gateway/auth.py"


class AuthError(Exception):
    """A refused token: ``code`` is a contract refusal code, ``message`` is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Claims:
    """What the gateway keeps from a verified token."""

    tenant_id: str
    exp: float | None
    subject: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def claim_value(payload: Mapping[str, Any], name: str) -> Any:
    """The claim ``name`` of a payload, or None.

    Tried literally first (``https://example.com/tenant``, or a top-level key that contains
    dots). Otherwise, unless ``name`` has a ``:``, each unescaped ``.`` goes one object deeper:
    ``app_metadata.tenant`` reads ``{"app_metadata": {"tenant": ...}}``; ``\\.`` is a dot inside a
    name. The conformance harness signs tokens by the same rule.
    """
    if name in payload:
        return payload[name]
    if ":" in name or "." not in name:
        return None
    node: Any = payload
    for key in re.split(r"(?<!\\)\.", name):
        key = key.replace("\\.", ".")
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def verify_token(token: object, settings: Settings) -> Claims:
    """Verify ``token`` and return its claims, or raise AuthError. Patchable seam."""
    if not isinstance(token, str) or not token.strip():
        raise AuthError(TOKEN_MISSING, "no token: send the JWT in the handshake auth.token")
    token = token.strip()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthError(TOKEN_INVALID, "malformed token") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg != settings.jwt_algorithm:
        raise AuthError(TOKEN_ALGORITHM, f"token algorithm {alg!r} refused: this gateway accepts {settings.jwt_algorithm} only")
    try:
        payload = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[settings.jwt_algorithm],
            leeway=0,
            options={"verify_signature": True, "verify_exp": True, "verify_nbf": True,
                     "verify_iat": False, "verify_aud": False, "verify_iss": False},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError(TOKEN_EXPIRED, "token expired: get a fresh token and reconnect") from None
    except jwt.ImmatureSignatureError:
        raise AuthError(TOKEN_NOT_YET_VALID, "token not valid yet (nbf is in the future)") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError(TOKEN_ALGORITHM, f"token algorithm refused: this gateway accepts {settings.jwt_algorithm} only") from None
    except jwt.InvalidSignatureError:
        raise AuthError(TOKEN_INVALID, "bad token signature") from None
    except jwt.PyJWTError as exc:
        raise AuthError(TOKEN_INVALID, f"invalid token: {exc}") from None
    if not isinstance(payload, dict):
        raise AuthError(TOKEN_INVALID, "token payload is not an object")
    tenant = claim_value(payload, settings.jwt_tenant_claim)
    if not isinstance(tenant, str) or tenant == "":
        raise AuthError(TENANT_MISSING, f"token has no tenant: claim {settings.jwt_tenant_claim!r} is missing or empty")
    if len(tenant) > contract.limits().max_tenant_id_length:
        raise AuthError(TENANT_MISSING, f"tenant claim longer than {contract.limits().max_tenant_id_length} characters")
    exp = payload.get("exp")
    sub = payload.get("sub")
    return Claims(
        tenant_id=tenant,
        exp=float(exp) if isinstance(exp, (int, float)) else None,
        subject=sub if isinstance(sub, str) else None,
        raw=payload,
    )
