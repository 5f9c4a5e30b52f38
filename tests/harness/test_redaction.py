"""Secrets never appear in any output: header, terminal, compliance.json/.html, JUnit XML, log tails.

The end-to-end test plants one secret of each kind a run can hold and fails if any output shows
it. The unit tests pin the redaction rules, including what must survive them (labels, template
placeholders, a JWT's readable header and claims).
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import jwt
import pytest

from realtime_conformance.harness.providers.target import Target
from realtime_conformance.harness.redaction import MASK, Redactor, is_secret_name

pytest_plugins = ["pytester"]

JWT_SECRET = "jwtsecret-PLANTED-" + "q" * 30
DB_PASSWORD = "dbpass-PLANTED-71"
URL_PASSWORD = "urlpass-PLANTED-72"
PG_PASSWORD = "pgpass-PLANTED-73"
CLAIM_SECRET = "claimsecret-PLANTED-74"
PROPERTY_TOKEN = "proptoken-PLANTED-75"
PLANTED = [JWT_SECRET, DB_PASSWORD, URL_PASSWORD, PG_PASSWORD, CLAIM_SECRET, PROPERTY_TOKEN]

# A target that starts nothing: what the plugin reads at the end (describe, logs, main.url),
# with the secrets in its log lines, as a gateway that logs its configuration would.
INNER_CONFTEST = f"""
import types
import pytest
from realtime_conformance.harness import plugin


class FakeTarget:
    def __init__(self, settings):
        self.settings = settings
        self.main = types.SimpleNamespace(url="http://127.0.0.1:9")

    def describe(self):
        return {{"gateway": {{"kind": "fake", "command": "gw --db postgres://app:{PG_PASSWORD}@db/app"}}}}

    def logs(self):
        s = self.settings.jwt_secret
        return {{"gateway": "booting with JWT_SECRET=" + s + "\\n"
                           "db password {DB_PASSWORD} accepted\\n"
                           "consumer on amqp://rtc:{URL_PASSWORD}@127.0.0.1:5673/ ready\\n"
                           "verified " + plugin_token(s) + "\\n"}}


def plugin_token(secret):
    import jwt
    return jwt.encode({{"tenantId": "t-1"}}, secret, algorithm="HS256")


@pytest.fixture(scope="session")
def conformance_target(pytestconfig, conformance_settings):
    target = FakeTarget(conformance_settings)
    pytestconfig.stash[plugin.TARGET_KEY] = target
    return target
"""

INNER_TEST = f"""
import os
import pytest
from realtime_conformance.harness.judging.failures import ConformanceFailure, Violation


@pytest.mark.requirement("DLV-1")
def test_DLV_1(conformance, conformance_settings, record_property):
    s = conformance_settings.jwt_secret
    print("the gateway was given JWT_SECRET=" + s)
    record_property("api_token", os.environ.get("PLANTED_TOKEN", ""))  # from outside: no literal the harness knows
    record_property("note", "secret is " + s)
    conformance.record("gateway env", {{"DB_PASSWORD": "{DB_PASSWORD}", "QUEUE": "q"}})
    conformance.record("auth", {{"token": "eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnRJZCI6InQtMSJ9.<signature>"}})
    raise ConformanceFailure([Violation("DLV-1", "Secret in the payload", "the payload held " + s, "high",
                                        {{"db": {{"password": "{DB_PASSWORD}"}},
                                          "url": "amqp://rtc:{URL_PASSWORD}@127.0.0.1/",
                                          "text": "the secret was " + s}})])


@pytest.mark.requirement("DLV-2")
def test_DLV_2():
    pass
"""


@pytest.fixture
def planted_run(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> tuple[pytest.RunResult, Path]:
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TEST)
    clean_env.setenv("RTC_JWT_SECRET", JWT_SECRET)
    clean_env.setenv("PLANTED_TOKEN", PROPERTY_TOKEN)
    result = pytester.runpytest(
        "--report-dir=rep", "--junitxml=junit.xml", "-o", "junit_logging=all", "-rA", "-v",
        f"--amqp-url=amqp://rtc:{URL_PASSWORD}@127.0.0.1:5673/",
        f"--gateway-env=DB_PASSWORD={DB_PASSWORD}",
        f"--gateway-env=DATABASE_URL=postgres://app:{PG_PASSWORD}@db/app",
        f'--extra-claims={{"aud": "portal", "client_secret": "{CLAIM_SECRET}"}}',
    )
    return result, pytester.path


def test_planted_secrets_appear_in_no_output(planted_run: tuple[pytest.RunResult, Path]) -> None:
    result, root = planted_run
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outputs = {
        "terminal": result.stdout.str() + result.stderr.str(),
        "compliance.json": (root / "rep" / "compliance.json").read_text(encoding="utf-8"),
        "compliance.html": (root / "rep" / "compliance.html").read_text(encoding="utf-8"),
        "junit.xml": (root / "junit.xml").read_text(encoding="utf-8"),
    }
    leaks = {(name, secret) for name, text in outputs.items() for secret in PLANTED if secret in text}
    assert leaks == set()
    # What was redacted stays recognisable, and the report still says what happened.
    report = json.loads(outputs["compliance.json"])
    assert "booting with JWT_SECRET=***" in report["logs"]["gateway"]
    assert "consumer on amqp://rtc:***@127.0.0.1:5673/ ready" in report["logs"]["gateway"]
    assert "db password *** accepted" in report["logs"]["gateway"]
    assert "verified eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0ZW5hbnRJZCI6InQtMSJ9.<signature>" in report["logs"]["gateway"]
    entry = next(e for e in report["requirements"] if e["id"] == "DLV-1")
    assert entry["reason"] == "Secret in the payload: the payload held ***"
    assert entry["failures"][0]["example"] == {"db": {"password": MASK}, "url": "amqp://rtc:***@127.0.0.1/",
                                              "text": "the secret was ***"}
    assert entry["evidence"]["gateway env"] == {"DB_PASSWORD": MASK, "QUEUE": "q"}
    assert entry["evidence"]["auth"] == {"token": "eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnRJZCI6InQtMSJ9.<signature>"}
    assert report["environment"]["gateway"]["command"] == "gw --db postgres://app:***@db/app"
    gateway_env = json.loads(report["settings"]["gateway_env"])
    assert gateway_env["DB_PASSWORD"] == MASK and gateway_env["JWT_SECRET"] == "{jwt_secret}"
    assert gateway_env["DATABASE_URL"] == "postgres://app:***@db/app"
    assert json.loads(report["settings"]["extra_claims"]) == {"aud": "portal", "client_secret": MASK}
    assert report["settings"]["amqp_url"] == "amqp://rtc:***@127.0.0.1:5673/"
    header = next(l for l in result.outlines if l.startswith("realtime-conformance: set "))
    assert '"DB_PASSWORD": "***"' in header and "jwt_secret=*** (48 bytes, environment)" in header
    assert "  FAIL DLV-1: Secret in the payload: the payload held ***" in result.outlines
    assert 'name="api_token" value="***"' in outputs["junit.xml"]


def test_log_tail_reaches_the_report_when_a_requirement_is_not_pass(
        planted_run: tuple[pytest.RunResult, Path]) -> None:
    _, root = planted_run
    report = json.loads((root / "rep" / "compliance.json").read_text(encoding="utf-8"))
    assert set(report["logs"]) == {"gateway"}
    html = (root / "rep" / "compliance.html").read_text(encoding="utf-8")
    assert "Logs (last lines)" in html and "db password *** accepted" in html


def test_no_log_tail_when_everything_passes(pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TEST.replace("    raise ConformanceFailure", "    return\n    raise X"))
    result = pytester.runpytest("--report-dir=rep", "--requirements=DLV-1,DLV-2")
    assert result.ret == pytest.ExitCode.OK
    report = json.loads((pytester.path / "rep" / "compliance.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "PASS" and "logs" not in report


def test_target_keeps_its_log_tails_after_close(tmp_path: Path) -> None:
    """The report is written after the session fixture closed the target and removed its work dir."""
    from realtime_conformance.harness.settings import DEFAULT_GATEWAY_ENV, Settings

    settings = types.SimpleNamespace(jwt_secret=JWT_SECRET, jwt_algorithm="HS256", tenant_claim="tenantId",
                                     extra_claims={}, gateway_env=DEFAULT_GATEWAY_ENV)
    target = Target(settings)  # type: ignore[arg-type]
    log = target.workdir / "main" / "gateway.log"
    log.parent.mkdir(parents=True)
    log.write_text("ERROR consumer lost\n")

    class FileGateway:
        def logs(self) -> str:
            return log.read_text() if log.exists() else ""

        def stop(self) -> None:
            pass

    target.main = types.SimpleNamespace(gateway=FileGateway())  # type: ignore[assignment]
    target.close()
    assert not target.workdir.exists()
    assert target.logs() == {"gateway": "ERROR consumer lost\n"}
    assert Settings  # imported for the type only


# --------------------------------------------------------------------------- the rules

@pytest.mark.parametrize("name", ["JWT_SECRET", "JWT_SECRET_KEY", "DB_PASSWORD", "API_TOKEN", "apiKey", "api_key",
                                  "client_secret", "dbPassword", "token", "access-token", "PASSWD", "SECRET"])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["token_kind", "expired token: connect_error", "tokens", "monkey", "keyboard",
                                  "key_id", "QUEUE", "auth", "RABBITMQ_URL", ""])
def test_not_secret_names(name: str) -> None:
    assert not is_secret_name(name)


def test_text_rules() -> None:
    r = Redactor([JWT_SECRET, "short"])
    token = jwt.encode({"tenantId": "t"}, JWT_SECRET, algorithm="HS256")
    head, claims, _ = token.split(".")
    assert r.text(f"secret {JWT_SECRET}!") == "secret ***!"
    assert r.text("short stays, too short to be a literal") == "short stays, too short to be a literal"
    assert r.text("amqp://u:p4ss@h:5672/ and postgres://app:pw@db/x") == "amqp://u:***@h:5672/ and postgres://app:***@db/x"
    assert r.text("amqp://guest@h/ http://h/path") == "amqp://guest@h/ http://h/path"
    assert r.text("DB_PASSWORD=hunter2 QUEUE=q api_token=abc&x=1") == "DB_PASSWORD=*** QUEUE=q api_token=***&x=1"
    assert r.text('{"client_secret": "abc", "aud": "p"}') == '{"client_secret": "***", "aud": "p"}'
    assert r.text("{'DB_PASSWORD': 'a\\'b', 'QUEUE': 'q'}") == "{'DB_PASSWORD': '***', 'QUEUE': 'q'}"
    assert r.text('{"note": "it\'s", "token_kind": "expired"}') == '{"note": "it\'s", "token_kind": "expired"}'
    assert r.text(f"Bearer {token}") == f"Bearer {head}.{claims}.<signature>"
    assert r.text(f"?token={token}") == f"?token={head}.{claims}.<signature>"
    assert r.text("JWT_SECRET={jwt_secret}") == "JWT_SECRET={jwt_secret}"  # a template placeholder is no secret


def test_value_rules() -> None:
    r = Redactor([JWT_SECRET])
    data = {"DB_PASSWORD": "hunter2", "token": "eyJhbGciOiJub25lIn0.eyJ0IjoxfQ.<signature>",
            "token_kind": "expired", "nested": [{"apiKey": "k-123"}, ("x", JWT_SECRET)],
            "jwt_secret": "*** (48 bytes, environment)", "PASSWORD_LENGTH": 12, "ok": True, "none": None}
    assert r.value(data) == {"DB_PASSWORD": MASK, "token": "eyJhbGciOiJub25lIn0.eyJ0IjoxfQ.<signature>",
                             "token_kind": "expired", "nested": [{"apiKey": MASK}, ("x", MASK)],
                             "jwt_secret": "*** (48 bytes, environment)", "PASSWORD_LENGTH": 12, "ok": True,
                             "none": None}
