"""AUTH: only a valid, unexpired, correctly signed token with a tenant claim gets in."""

from __future__ import annotations

import pytest

from _support import control_client, expect_refused, metrics


@pytest.mark.requirement("AUTH-1")
async def test_valid_token_joins_its_tenant_room(conformance):
    async with conformance.scenario() as sc:
        mine, other = sc.tenant(), sc.tenant()
        await sc.connect(mine)
        await sc.connect(other)
        await sc.publish(mine, "metrics_update", metrics(1))
        await sc.publish(other, "metrics_update", metrics(2))
        await sc.settle()
        conformance.judge(sc, "AUTH-1", as_=("DLV-1", "ISO-1"))


@pytest.mark.requirement("AUTH-2")
async def test_no_token_is_refused(conformance):
    async with conformance.scenario() as sc:
        await expect_refused(conformance, sc, sc.tenant(), label="no token", auth={})


@pytest.mark.requirement("AUTH-2")
async def test_no_auth_at_all_is_refused(conformance):
    async with conformance.scenario() as sc:
        await expect_refused(conformance, sc, sc.tenant(), label="no auth object", token=None)


@pytest.mark.requirement("AUTH-3")
async def test_expired_token_is_refused(conformance):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        await expect_refused(conformance, sc, tenant, label="expired token", token=conformance.tokens.expired(tenant))


@pytest.mark.requirement("AUTH-4")
@pytest.mark.parametrize("kind", ["wrong secret", "tampered payload"])
async def test_forged_token_is_refused(conformance, kind):
    async with conformance.scenario() as sc:
        tenant, victim = sc.tenant(), sc.tenant("victim")
        token = (conformance.tokens.wrong_secret(tenant) if kind == "wrong secret"
                 else conformance.tokens.tampered(tenant, to_tenant=victim))
        await control_client(conformance, sc, victim)
        await expect_refused(conformance, sc, tenant, label=kind, token=token)


@pytest.mark.requirement("AUTH-5")
@pytest.mark.parametrize("kind", ["alg none", "other algorithm"])
async def test_unsigned_or_other_algorithm_is_refused(conformance, kind):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        token = conformance.tokens.unsigned(tenant) if kind == "alg none" else conformance.tokens.other_algorithm(tenant)
        await expect_refused(conformance, sc, tenant, label=kind, token=token)


@pytest.mark.requirement("AUTH-6")
@pytest.mark.parametrize("kind", ["no tenant claim", "empty tenant claim"])
async def test_token_without_tenant_is_refused(conformance, kind):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        token = conformance.tokens.without_tenant() if kind == "no tenant claim" else conformance.tokens.empty_tenant()
        await expect_refused(conformance, sc, tenant, label=kind, token=token)


@pytest.mark.requirement("AUTH-9")
async def test_token_in_query_string_is_not_accepted(conformance):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        token = conformance.tokens.valid(tenant)
        await expect_refused(conformance, sc, tenant, label="token in query string", token=None,
                             query=f"token={token}", need_connect_error=False)


@pytest.mark.requirement("AUTH-10")
async def test_not_yet_valid_token_is_refused(conformance):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        await expect_refused(conformance, sc, tenant, label="nbf in the future",
                             token=conformance.tokens.not_yet_valid(tenant))


@pytest.mark.requirement("AUTH-11")
async def test_refusals_carry_a_machine_readable_code(conformance):
    async with conformance.scenario() as sc:
        tenant = sc.tenant()
        await control_client(conformance, sc, tenant)
        cases = {"expired": conformance.tokens.expired(tenant), "missing": None,
                 "forged": conformance.tokens.wrong_secret(tenant)}
        codes, violations = {}, []
        for label, token in cases.items():
            c = sc.client(tenant, name=f"{tenant}/{label}", token=token, expects_events=False)
            if await c.connect():
                conformance.unknown(f"the {label} token was accepted, so its refusal reason cannot be judged (see AUTH-2..4)")
            data = c.connect_errors[-1].data if c.connect_errors else None
            code = data.get("code") if isinstance(data, dict) else None
            codes[label] = code
            if not isinstance(code, str) or not code:
                violations.append(conformance.violation(
                    "Refusal without a machine-readable code",
                    f"refusing a {label} token, connect_error carried {data!r}; expected an object with a string `code`",
                    {"connect_error": data}, severity="medium"))
        conformance.record("codes", codes)
        if codes.get("expired") and codes.get("expired") == codes.get("forged"):
            violations.append(conformance.violation(
                "Expired and forged tokens share one code",
                f"both refused with {codes['expired']!r}: a portal cannot tell 'refresh your token' from 'forged'",
                {"codes": codes}, severity="medium"))
        conformance.fail(violations)
