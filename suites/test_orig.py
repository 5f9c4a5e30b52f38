"""ORIG: the Origin header is checked exactly, on polling and on the websocket upgrade, and the
REST API answers a browser's CORS requests for the listed origins only.

An allowed_origins entry may be a pattern (``https://*.example.com``): ORIG-1 then tries
concrete origins it matches, and ORIG-2's look-alikes include the registrable-domain tricks.
ORIG-3 is judged over plain HTTP, as a browser's fetch would be judged by its CORS check.
"""

from __future__ import annotations

import pytest

from realtime_conformance.harness import RestClient

# Every suite test is an end-to-end check, and async whatever the project's asyncio_mode.
pytestmark = [pytest.mark.realtime, pytest.mark.asyncio]

TRANSPORTS = {"polling": ("polling",), "websocket": ("websocket",)}


@pytest.mark.requirement("ORIG-1")
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_listed_origins_are_accepted(conformance, transport):
    async with conformance.scenario() as sc:
        tenant, violations = sc.tenant(), []
        for origin in conformance.settings.allowed_origin_examples:
            c = sc.client(tenant, name=f"{tenant}/{origin}", transports=TRANSPORTS[transport], headers={"Origin": origin})
            if not await c.connect():
                violations.append(conformance.violation(
                    "Listed origin refused", f"Origin {origin} over {transport} was refused",
                    {"origin": origin, "transport": transport, "connect_errors": [e.data for e in c.connect_errors]}))
            else:
                await c.close()
        conformance.record("origins_tried", list(conformance.settings.allowed_origin_examples))
        conformance.fail(violations)


@pytest.mark.requirement("ORIG-2")
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unlisted_and_lookalike_origins_are_refused(conformance, transport):
    async with conformance.scenario() as sc:
        tenant, violations = sc.tenant(), []
        allowed = conformance.settings.allowed_origin_examples[0]  # a concrete origin, never a pattern
        control = sc.client(tenant, name=f"{tenant}/control", transports=TRANSPORTS[transport], headers={"Origin": allowed})
        if not await control.connect():
            conformance.unknown(f"the listed origin {allowed} was refused over {transport}, so refusals prove nothing")
        for origin in conformance.settings.forbidden_origins:
            c = sc.client(tenant, name=f"{tenant}/{origin}", transports=TRANSPORTS[transport],
                          headers={"Origin": origin}, expects_events=False)
            if await c.connect():
                violations.append(conformance.violation(
                    "Unlisted origin accepted", f"Origin {origin!r} over {transport} was connected; listed: "
                    f"{', '.join(conformance.settings.allowed_origins)}", {"origin": origin, "transport": transport}))
                await c.close()
        conformance.record("origins_tried", list(conformance.settings.forbidden_origins))
        conformance.fail(violations)


# The REST calls the portal makes with its token (health takes none, so no browser preflights it
# with Authorization). GET and POST are CORS-safelisted methods: a preflight needs no
# Access-Control-Allow-Methods for them, only the origin and the Authorization header allowed.
CORS_CALLS = {"stats": "GET", "refresh": "POST", "conversations": "GET", "messages": "GET"}


def _origin_allowed(answer, origin: str) -> bool:
    """Whether a browser at ``origin`` may read this answer: Access-Control-Allow-Origin names it,
    or is ``*`` (valid for the portal's fetch, which sends a token but no cookies)."""
    return answer.headers.get("access-control-allow-origin", "").strip() in (origin, "*")


def _allows_authorization(answer) -> bool:
    """Access-Control-Allow-Headers lists ``authorization`` (any case). A ``*`` does not count: the
    Fetch standard never lets the wildcard cover Authorization, which must be named."""
    listed = {h.strip().lower() for h in answer.headers.get("access-control-allow-headers", "").split(",")}
    return "authorization" in listed


def _shown(answer) -> dict:
    return {"status": answer.status,
            "headers": {k: v for k, v in answer.headers.items() if k.startswith("access-control-") or k == "vary"}}


@pytest.mark.requirement("ORIG-3")
async def test_rest_cors_allows_listed_origins_only(conformance):
    """A portal page at a listed origin can call REST with its token; a look-alike's page cannot."""
    conformance.require("rest")
    token = conformance.tokens.valid("orig3-probe")
    calls = {name: (method, conformance.settings.rest_paths[name]) for name, method in CORS_CALLS.items()}
    violations, seen, refused = [], {}, {}
    async with RestClient(conformance.main.url, conformance.settings.rest_paths) as rest:
        paths = {name: rest.path(name, conversationId="conv-orig3") if name == "messages" else path
                 for name, (_, path) in calls.items()}

        async def preflight(origin: str, name: str):
            return await rest.exchange("OPTIONS", paths[name], headers={
                "Origin": origin, "Access-Control-Request-Method": calls[name][0],
                "Access-Control-Request-Headers": "authorization"})

        for origin in conformance.settings.allowed_origin_examples:
            for name in calls:
                answer = await preflight(origin, name)
                seen[f"OPTIONS {name} from {origin}"] = _shown(answer)
                wrong = [why for bad, why in (
                    (not 200 <= answer.status < 300, f"status {answer.status} (a browser needs 2xx)"),
                    (not _origin_allowed(answer, origin), "Access-Control-Allow-Origin does not name it"),
                    (not _allows_authorization(answer), "Access-Control-Allow-Headers does not list authorization"),
                ) if bad]
                if wrong:
                    violations.append(conformance.violation(
                        "REST preflight refuses a listed origin",
                        f"OPTIONS {paths[name]} from {origin} for {calls[name][0]} with Authorization: "
                        + "; ".join(wrong), {"origin": origin, "path": paths[name], **_shown(answer)}))
            for name in ("stats", "conversations"):  # GETs a valid token answers 200 (REST-2's control)
                answer = await rest.exchange("GET", paths[name], token, headers={"Origin": origin})
                seen[f"GET {name} from {origin}"] = _shown(answer)
                if not _origin_allowed(answer, origin):
                    violations.append(conformance.violation(
                        "REST answer unreadable from a listed origin",
                        f"GET {paths[name]} from {origin} answered {answer.status} without "
                        "Access-Control-Allow-Origin naming it", {"origin": origin, **_shown(answer)}))
        for origin in conformance.settings.forbidden_origins:
            statuses = []
            for name in calls:
                answer = await preflight(origin, name)
                statuses.append(f"OPTIONS {name} {answer.status}")
                if 200 <= answer.status < 300 and _origin_allowed(answer, origin):
                    violations.append(conformance.violation(
                        "REST preflight allows an unlisted origin",
                        f"OPTIONS {paths[name]} from {origin!r} answered {answer.status} with "
                        f"Access-Control-Allow-Origin {answer.headers.get('access-control-allow-origin')!r}; "
                        f"listed: {', '.join(conformance.settings.allowed_origins)}",
                        {"origin": origin, "path": paths[name], **_shown(answer)}))
            answer = await rest.exchange("GET", paths["conversations"], token, headers={"Origin": origin})
            statuses.append(f"GET conversations {answer.status}")
            refused[origin] = ", ".join(statuses)
            if _origin_allowed(answer, origin):
                violations.append(conformance.violation(
                    "REST answer readable from an unlisted origin",
                    f"GET {paths['conversations']} from {origin!r} answered {answer.status} with "
                    f"Access-Control-Allow-Origin {answer.headers.get('access-control-allow-origin')!r}",
                    {"origin": origin, **_shown(answer)}))
    conformance.record("listed_origins_answers", seen)
    conformance.record("unlisted_origins_statuses", refused)
    conformance.fail(violations)
