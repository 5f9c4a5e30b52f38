"""Each TokenFactory token is accepted or refused by a real JWT library exactly as its name says."""

from __future__ import annotations

import base64
import json
import time
import warnings

import jwt
import pytest

from realtime_conformance.harness.wire.tokens import TokenFactory, claim_path

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


# --------------------------------------------------------------------------- nested tenant claims


@pytest.mark.parametrize("name, path", [
    ("tenantId", ("tenantId",)),
    ("app_metadata.tenant", ("app_metadata", "tenant")),
    ("a.b.c", ("a", "b", "c")),
    ("https://example.com/tenant", ("https://example.com/tenant",)),  # a URI is one literal claim
    ("https://example.com/claims.tenant", ("https://example.com/claims.tenant",)),
    ("urn:acme:tenant.id", ("urn:acme:tenant.id",)),
    ("org\\.id", ("org.id",)),  # an escaped dot stays in the name
    ("app\\.meta.tenant", ("app.meta", "tenant")),
])
def test_claim_path(name: str, path: tuple[str, ...]) -> None:
    assert claim_path(name) == path


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a.", "."])
def test_claim_path_refuses_empty_segments(name: str) -> None:
    with pytest.raises(ValueError):
        claim_path(name)


NESTED = "app_metadata.tenant"


def nested_factory() -> TokenFactory:
    return TokenFactory(SECRET, "HS256", tenant_claim=NESTED,
                        extra_claims={"aud": "agent-portal", "app_metadata": {"roles": ["agent"]}})


def test_nested_tenant_claim_merges_with_extra_claims() -> None:
    f = nested_factory()
    claims = decode(f, f.valid("t-1"), audience="agent-portal")
    assert claims["app_metadata"] == {"roles": ["agent"], "tenant": "t-1"}
    assert NESTED not in claims and "tenantId" not in claims


def test_bad_kinds_follow_the_nested_path() -> None:
    f = nested_factory()
    assert payload(f.without_tenant())["app_metadata"] == {"roles": ["agent"]}  # only the tenant is missing
    assert payload(f.empty_tenant())["app_metadata"] == {"roles": ["agent"], "tenant": ""}
    forged = payload(f.tampered("t-1", to_tenant="t-2"))
    assert forged["app_metadata"] == {"roles": ["agent"], "tenant": "t-2"}
    assert forged["sub"] == "agent-of-t-1"  # the forger edited the tenant claim and nothing else
    with pytest.raises(jwt.InvalidSignatureError):
        decode(f, f.tampered("t-1", to_tenant="t-2"), audience="agent-portal")
    for token in (f.expired("t-1"), f.not_yet_valid("t-1"), f.wrong_secret("t-1"), f.unsigned("t-1"),
                  f.other_algorithm("t-1")):
        assert payload(token)["app_metadata"]["tenant"] == "t-1", token


def test_nested_path_without_extra_claims_creates_the_objects() -> None:
    f = TokenFactory(SECRET, "HS256", tenant_claim="a.b.c")
    assert decode(f, f.valid("t-1"))["a"] == {"b": {"c": "t-1"}}
    assert "a" not in payload(f.without_tenant())


def test_uri_and_escaped_claims_are_literal() -> None:
    f = TokenFactory(SECRET, "HS256", tenant_claim="https://example.com/claims.tenant")
    assert decode(f, f.valid("t-1"))["https://example.com/claims.tenant"] == "t-1"
    f = TokenFactory(SECRET, "HS256", tenant_claim="org\\.id")
    assert decode(f, f.valid("t-1"))["org.id"] == "t-1"


# --------------------------------------------------------------------------- extra-claims templates


def test_extra_claims_templates_are_filled_per_token() -> None:
    f = TokenFactory(SECRET, "HS256", extra_claims={
        "jti": "tok-{n}", "org": "{tenant}", "profile": {"name": "{user}", "tags": ["t:{tenant}", {"u": "{user}"}]},
        "literal": "{{tenant}}", "count": 3, "flag": True,
    })
    a, b = decode(f, f.valid("t-1")), decode(f, f.valid("t-2", user="alice"))
    assert (a["org"], a["profile"], a["sub"]) == (
        "t-1", {"name": "agent-of-t-1", "tags": ["t:t-1", {"u": "agent-of-t-1"}]}, "agent-of-t-1")
    assert (b["org"], b["profile"]["name"], b["profile"]["tags"][1], b["sub"]) == ("t-2", "alice", {"u": "alice"}, "alice")
    assert (a["literal"], a["count"], a["flag"]) == ("{tenant}", 3, True)
    assert a["jti"] != b["jti"] and int(b["jti"][4:]) > int(a["jti"][4:]) >= 1  # {n} never repeats
    # Without a tenant, {tenant} is empty; the tenant claim is still absent.
    none = payload(f.without_tenant())
    assert none["org"] == "" and "tenantId" not in none
    assert f.extra_claims["org"] == "{tenant}"  # the templates are not consumed


def test_tenant_claim_wins_over_an_extra_claim_of_the_same_name() -> None:
    f = TokenFactory(SECRET, "HS256", tenant_claim="tenant_id", extra_claims={"tenant_id": "fixed"})
    assert decode(f, f.valid("t-1"))["tenant_id"] == "t-1"


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



def test_tokens_fixture_nested_claim_and_templates(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makepyfile("""
import jwt

def test_tokens(tokens, conformance_settings):
    claims = jwt.decode(tokens.valid("t-9"), conformance_settings.jwt_secret, algorithms=["HS256"])
    assert claims["app_metadata"] == {"tenant": "t-9", "org": "org-t-9"}
    assert claims["jti"].startswith("t-9-")
""")
    result = pytester.runpytest("--tenant-claim=app_metadata.tenant",
                                '--extra-claims={"app_metadata": {"org": "org-{tenant}"}, "jti": "{tenant}-{n}"}')
    result.assert_outcomes(passed=1)
