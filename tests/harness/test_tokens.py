"""Each TokenFactory token is accepted or refused by a real JWT library exactly as its name says."""

from __future__ import annotations

import base64
import json
import time
import warnings

import jwt
import pytest

from realtime_conformance.harness.wire.tokens import TokenFactory

pytest_plugins = ["pytester"]

SECRET = "a-shared-secret-" + "0123456789" * 5  # 65 bytes: enough for HS512 too (RFC 7518 3.2)
ALGORITHMS = ("HS256", "HS384", "HS512")


def decode(factory: TokenFactory, token: str, **options) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an insecure-key warning would mean the secret is too short
        return jwt.decode(token, factory.secret, algorithms=[factory.algorithm], **options)


def header(token: str) -> dict:
    return jwt.get_unverified_header(token)


def payload(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.fixture(params=ALGORITHMS)
def factory(request: pytest.FixtureRequest) -> TokenFactory:
    return TokenFactory(SECRET, request.param)


def test_valid_is_accepted(factory: TokenFactory) -> None:
    claims = decode(factory, factory.valid("t-1"))
    assert claims["tenantId"] == "t-1"
    assert claims["sub"] == "agent-of-t-1"
    assert claims["exp"] - claims["iat"] == factory.lifetime_s
    assert header(factory.valid("t-1")) == {"alg": factory.algorithm, "typ": "JWT"}


def test_valid_with_ttl_expires_then(factory: TokenFactory) -> None:
    before = int(time.time())
    claims = decode(factory, factory.valid("t-1", ttl_s=30))
    assert before + 29 <= claims["exp"] <= int(time.time()) + 30


def test_expired_is_refused(factory: TokenFactory) -> None:
    with pytest.raises(jwt.ExpiredSignatureError):
        decode(factory, factory.expired("t-1"))
    # Expired well beyond any leeway a gateway might allow (PyJWT's default is 0).
    with pytest.raises(jwt.ExpiredSignatureError):
        decode(factory, factory.expired("t-1"), leeway=60)


def test_not_yet_valid_is_refused(factory: TokenFactory) -> None:
    with pytest.raises(jwt.ImmatureSignatureError):
        decode(factory, factory.not_yet_valid("t-1"))


def test_wrong_secret_is_refused(factory: TokenFactory) -> None:
    token = factory.wrong_secret("t-1")
    assert header(token)["alg"] == factory.algorithm
    with pytest.raises(jwt.InvalidSignatureError):
        decode(factory, token)


def test_tampered_is_refused_and_names_the_other_tenant(factory: TokenFactory) -> None:
    token = factory.tampered("t-1", to_tenant="t-2")
    assert payload(token)["tenantId"] == "t-2"
    assert header(token)["alg"] == factory.algorithm
    with pytest.raises(jwt.InvalidSignatureError):
        decode(factory, token)


def test_unsigned_is_alg_none_with_empty_signature(factory: TokenFactory) -> None:
    token = factory.unsigned("t-1")
    assert header(token) == {"alg": "none", "typ": "JWT"}
    assert token.endswith(".") and token.count(".") == 2
    assert payload(token)["tenantId"] == "t-1"
    with pytest.raises(jwt.InvalidAlgorithmError):
        decode(factory, token)


def test_other_algorithm_is_refused(factory: TokenFactory) -> None:
    token = factory.other_algorithm("t-1")
    assert header(token)["alg"] != factory.algorithm
    assert header(token)["alg"] in ALGORITHMS
    with pytest.raises(jwt.InvalidAlgorithmError):
        decode(factory, token)
    # Right secret, so only the algorithm pin refuses it.
    assert jwt.decode(token, SECRET, algorithms=[header(token)["alg"]])["tenantId"] == "t-1"


def test_without_tenant_has_no_tenant_claim(factory: TokenFactory) -> None:
    claims = decode(factory, factory.without_tenant())
    assert "tenantId" not in claims
    assert claims["sub"] == "agent"


def test_empty_tenant_is_empty(factory: TokenFactory) -> None:
    claims = decode(factory, factory.empty_tenant())
    assert claims["tenantId"] == ""


def test_extra_claims_and_custom_tenant_claim() -> None:
    f = TokenFactory(SECRET, "HS256", tenant_claim="org_id", extra_claims={"aud": "agent-portal", "iss": "sm"})
    claims = decode(f, f.valid("t-1"), audience="agent-portal")
    assert claims["org_id"] == "t-1"
    assert "tenantId" not in claims
    assert (claims["aud"], claims["iss"]) == ("agent-portal", "sm")
    # The broken kinds carry them too, so only the one defect differs.
    for token in (f.expired("t-1"), f.not_yet_valid("t-1"), f.wrong_secret("t-1"), f.tampered("t-1", to_tenant="t-2"),
                  f.unsigned("t-1"), f.other_algorithm("t-1"), f.without_tenant(), f.empty_tenant()):
        assert payload(token)["aud"] == "agent-portal", token
    assert "org_id" not in payload(f.without_tenant())
    assert payload(f.empty_tenant())["org_id"] == ""
    assert payload(f.tampered("t-1", to_tenant="t-2"))["org_id"] == "t-2"


def test_tokens_fixture_uses_the_settings(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("""
import jwt

def test_tokens(tokens, conformance_settings):
    assert tokens.secret == conformance_settings.jwt_secret
    claims = jwt.decode(tokens.valid("t-9"), conformance_settings.jwt_secret, algorithms=["HS384"],
                        audience="agent-portal")
    assert claims["org"] == "t-9" and claims["aud"] == "agent-portal"
""")
    result = pytester.runpytest("--jwt-algorithm=HS384", "--tenant-claim=org", '--extra-claims={"aud": "agent-portal"}')
    result.assert_outcomes(passed=1)

