"""In-process checks of the pure seams: token verification rules with a custom
tenant claim and algorithm, status ranking, origin matching, stats emission."""

from __future__ import annotations

import time

import pytest

from realtime_conformance.gateway.auth import AuthError, verify_token
from realtime_conformance.gateway.config import load_settings
from realtime_conformance.gateway.metrics import should_emit_stats
from realtime_conformance.gateway.origins import origin_allowed
from realtime_conformance.gateway.readmodel import ReadModel, Stats, furthest_status
from gwkit import SECRET, mint

URI_CLAIM = "https://example.com/tenant"


def test_custom_claim_and_algorithm() -> None:
    s = load_settings({"JWT_SECRET": SECRET, "JWT_TENANT_CLAIM": URI_CLAIM, "JWT_ALGORITHM": "HS384"})
    assert verify_token(mint("acme", alg="HS384", claim=URI_CLAIM), s).tenant_id == "acme"
    with pytest.raises(AuthError) as info:
        verify_token(mint("acme", alg="HS384"), s)  # tenantId present, but it is not the configured claim
    assert info.value.code == "tenant_missing"
    with pytest.raises(AuthError) as info:
        verify_token(mint("acme", claim=URI_CLAIM), s)  # HS256 while HS384 is configured
    assert info.value.code == "token_algorithm"


@pytest.mark.parametrize("claim, payload", [
    ("app_metadata.tenant", {"app_metadata": {"tenant": "acme", "roles": ["agent"]}}),
    ("a.b.c", {"a": {"b": {"c": "acme"}}}),
    ("org.id", {"org.id": "acme", "org": {"id": "other"}}),  # tried literally first
    ("org\\.id", {"org.id": "acme"}),  # an escaped dot is part of the name
    (URI_CLAIM, {URI_CLAIM: "acme"}),
])
def test_nested_and_literal_tenant_claims(claim: str, payload: dict) -> None:
    s = load_settings({"JWT_SECRET": SECRET, "JWT_TENANT_CLAIM": claim})
    token = mint(None, extra=payload, drop_tenant=True)
    assert verify_token(token, s).tenant_id == "acme"


@pytest.mark.parametrize("claim, payload", [
    ("app_metadata.tenant", {"app_metadata": {"tenant": ""}}),
    ("app_metadata.tenant", {"app_metadata": {"other": "acme"}}),
    ("app_metadata.tenant", {"app_metadata": "acme"}),
    ("app_metadata.tenant", {"app_metadata": {"tenant": {"id": "acme"}}}),
    ("https://example.com/x.tenant", {"https://example": {"com/x": {"tenant": "acme"}}}),  # a URI never nests
])
def test_nested_tenant_claim_missing_or_not_a_string(claim: str, payload: dict) -> None:
    s = load_settings({"JWT_SECRET": SECRET, "JWT_TENANT_CLAIM": claim})
    with pytest.raises(AuthError) as info:
        verify_token(mint(None, extra=payload, drop_tenant=True), s)
    assert info.value.code == "tenant_missing"


def test_zero_leeway() -> None:
    s = load_settings({"JWT_SECRET": SECRET})
    with pytest.raises(AuthError) as info:
        verify_token(mint("a", exp_in=0), s)
    assert info.value.code == "token_expired"
    with pytest.raises(AuthError) as info:
        verify_token(mint("a", extra={"nbf": int(time.time()) + 2}), s)
    assert info.value.code == "token_not_yet_valid"
    assert verify_token(mint("a", extra={"nbf": int(time.time())}), s).tenant_id == "a"


@pytest.mark.parametrize("sequence,expected", [
    (["sent", "delivered", "read"], "read"),
    (["sent", "read"], "read"),
    (["read", "delivered"], "read"),
    (["delivered", "sent"], "delivered"),
    (["read", "failed", "read"], "failed"),
    (["failed", "sent", "delivered", "read"], "failed"),
])
def test_furthest_status(sequence: list[str], expected: str) -> None:
    status = None
    for st in sequence:
        status = furthest_status(status, st)
    assert status == expected


def test_origin_allowed_is_exact() -> None:
    allowed = ("http://localhost:3014",)
    assert origin_allowed(None, allowed) and origin_allowed("", allowed)
    assert origin_allowed("http://localhost:3014", allowed)
    for bad in ("http://localhost:3014.evil", "https://localhost:3014", "http://localhost:301", "xhttp://localhost:3014"):
        assert not origin_allowed(bad, allowed)


def test_stats_emission_and_response_time(tmp_path) -> None:
    a = Stats(1, 1, 2, 0.0)
    assert should_emit_stats(None, a) and not should_emit_stats(a, Stats(1, 1, 2, 0.0))
    assert should_emit_stats(a, Stats(1, 0, 2, 0.0))
    rm = ReadModel(str(tmp_path / "rm.sqlite3"))
    env = {"type": "new_message", "tenantId": "t", "timestamp": "2026-01-01T00:00:00Z",
           "data": {"conversationId": "c", "messageId": "m1", "timestamp": "2026-01-01T00:00:00Z"}}
    assert rm.apply(env, b"1") and not rm.apply(env, b"1")
    env2 = {**env, "data": {**env["data"], "messageId": "m2", "timestamp": "2026-01-01T00:00:10Z"}}
    rm.apply(env2, b"2")
    rm.apply({"type": "conversation_update", "tenantId": "t", "timestamp": "x",
              "data": {"conversationId": "c", "direction": "outbound", "lastMessageAt": "2026-01-01T00:00:20Z"}}, b"3")
    assert rm.stats("t") == Stats(1, 0, 2, 15.0)  # (20 + 10) / 2
    rm.close()
    assert ReadModel(str(tmp_path / "rm.sqlite3")).stats("t") == Stats(1, 0, 2, 15.0)  # survives reopening
