"""REST-2: the REST API checks tokens exactly like the handshake does."""

from __future__ import annotations

import pytest

from harness._rest import RestClient


@pytest.mark.requirement("REST-2")
async def test_rest_refuses_bad_tokens_with_401(conformance):
    conformance.require("rest")
    tenant = "rest-probe"
    t = conformance.tokens
    bad = {"missing": None, "expired": t.expired(tenant), "forged": t.wrong_secret(tenant),
           "unsigned": t.unsigned(tenant), "other algorithm": t.other_algorithm(tenant),
           "no tenant": t.without_tenant()}
    async with RestClient(conformance.main.url, conformance.settings.rest_paths) as rest:
        endpoints = {"GET stats": rest.stats, "GET conversations": rest.conversations}
        for name, call in endpoints.items():
            status, body = await call(t.valid(tenant))
            if status != 200:
                conformance.unknown(f"positive control: {name} with a valid token answered {status}, not 200")
        violations, seen = [], {}
        for name, call in endpoints.items():
            for label, token in bad.items():
                status, body = await call(token)
                seen[f"{name} / {label}"] = status
                if status != 401:
                    violations.append(conformance.violation(
                        f"{label} token not refused with 401", f"{name} answered {status}",
                        {"endpoint": name, "token": label, "status": status, "body": body}))
        conformance.record("statuses", seen)
        conformance.fail(violations)
