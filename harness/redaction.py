"""Secrets out of everything the harness prints or writes: one function, applied at the boundaries.

The header, compliance.json/.html (including failure examples, evidence and log tails), JUnit
properties and the terminal go through a ``Redactor`` built from the run's settings. It removes:

- the values it was told are secret (the JWT secret, secret-named ``gateway_env`` values and
  ``extra_claims``, URL passwords), wherever they appear as a substring;
- values under secret-named keys, in mappings, as ``NAME=value`` and as ``"name": "value"`` in
  text. A name is secret-named if, in any case, one of its words is SECRET, PASSWORD, PASSWD, PWD,
  PASSPHRASE, APIKEY or CREDENTIAL(S), or its last word is TOKEN or KEY: ``JWT_SECRET_KEY``,
  ``DB_PASSWORD``, ``api_token``, ``apiKey``; not ``token_kind`` or ``expired token: code``, which
  the suites use for labels;
- URL passwords (``amqp://user:pass@host`` becomes ``amqp://user:***@host``);
- JWT signatures: a token keeps its readable header and claims, its signature is cut, as the
  suites already show tokens in their examples.

``strip_terminal_codes`` removes what a gateway writes for a terminal (colours, cursor moves,
window titles) from the logs the harness captures: a report is read in a browser or a CI page.

Standard library only, so the report module can use it on a saved result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
MIN_LITERAL = 6  # shorter "secrets" (guest, 1234) would garble unrelated text; names and URLs still hide them

SECRET_WORDS = frozenset({"secret", "secrets", "password", "passwd", "pwd", "passphrase", "apikey",
                          "credential", "credentials"})
SECRET_LAST_WORDS = frozenset({"token", "key"})

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]*:)(?P<pw>[^\s@/?#]+)(?P<at>@)")
_ASSIGNMENT = re.compile(r"(?P<name>\b[A-Za-z_][A-Za-z0-9_.-]*)(?P<eq>=)(?P<value>[^\s&;,\"'<>]+)")
# "name": "value" (JSON) and 'name': 'value' (a Python repr, as in an assertion's message).
_JSON_PAIR = re.compile(r"""(?P<head>(?P<q>["'])(?P<name>[^"'\\]{1,80})(?P=q)\s*:\s*(?P<vq>["']))"""
                        r"""(?P<value>(?:(?!(?P=vq))[^\\]|\\.)*)(?P<tail>(?P=vq))""")
_JWT = re.compile(r"\b(?P<keep>eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)\.(?P<sig>[A-Za-z0-9_-]+)")
_PLACEHOLDERS = re.compile(r"(?:\{[a-z_]+\})+")
CUT = ".<signature>"
# ECMA-48 sequences a log may carry: CSI (ESC [ ... final byte, or its 8-bit form), OSC (ESC ] ...
# ended by BEL or ST, i.e. ESC and a backslash), the other string controls (DCS, SOS, PM, APC), and two-byte
# ESC escapes.
_TERMINAL_CODES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]"
)


def is_secret_name(name: object) -> bool:
    """Whether a key or variable name says its value is a secret (``JWT_SECRET_KEY``, ``dbPassword``)."""
    if not isinstance(name, str):
        return False
    words = [w.lower() for w in _WORDS.findall(name)]
    return bool(words) and (words[-1] in SECRET_LAST_WORDS or any(w in SECRET_WORDS for w in words))


def strip_terminal_codes(text: str) -> str:
    """``text`` without terminal control sequences (ANSI colours, cursor moves, OSC titles and links),
    so a captured log reads as its words in HTML, JSON and JUnit; a lone ESC left over goes too."""
    if not text or ("\x1b" not in text and not any(c in text for c in "\x90\x98\x9b\x9c\x9d\x9e\x9f")):
        return text
    return _TERMINAL_CODES.sub("", text).replace("\x1b", "")


def url_passwords(text: str) -> list[str]:
    """The passwords of the URLs in ``text``."""
    return [m.group("pw") for m in _URL_PASSWORD.finditer(text)]


class Redactor:
    """Removes the run's secrets from text and from nested data; see the module docstring."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        found = {s for s in literals if isinstance(s, str) and len(s) >= MIN_LITERAL}
        # Longest first, so a secret that contains another is replaced whole.
        self.literals: tuple[str, ...] = tuple(sorted(found, key=len, reverse=True))

    def secret_value(self, value: str) -> str:
        """What a value under a secret-named key becomes: a JWT keeps all but its signature,
        a template placeholder ({jwt_secret}) and an already masked value stay, the rest is masked."""
        if value == "" or value.startswith(MASK) or value.endswith(CUT) or _PLACEHOLDERS.fullmatch(value):
            return value
        jwt = _JWT.fullmatch(value)
        if jwt:
            return jwt.group("keep") + CUT
        return MASK

    def text(self, text: str) -> str:
        """``text`` with every secret it holds masked."""
        if not text:
            return text
        for literal in self.literals:
            if literal in text:
                text = text.replace(literal, MASK)
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + m.group("at"), text)
        text = _ASSIGNMENT.sub(self._assignment, text)
        text = _JSON_PAIR.sub(self._json_pair, text)
        return _JWT.sub(lambda m: m.group("keep") + CUT, text)

    def _assignment(self, m: re.Match[str]) -> str:
        if not is_secret_name(m.group("name")):
            return m.group(0)
        return m.group("name") + m.group("eq") + self.secret_value(m.group("value"))

    def _json_pair(self, m: re.Match[str]) -> str:
        if not is_secret_name(m.group("name")):
            return m.group(0)
        return m.group("head") + self.secret_value(m.group("value")) + m.group("tail")

    def value(self, data: Any, key: object = None) -> Any:
        """A copy of ``data`` (dicts, lists, tuples, strings) with secrets masked; ``key`` is the
        name the value is held under, if any. Numbers, booleans and None pass as they are."""
        if isinstance(data, Mapping):
            return {k: self.value(v, k) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            items = [self.value(v, key) for v in data]
            return items if isinstance(data, list) else tuple(items)
        if isinstance(data, str):
            if is_secret_name(key):
                return self.secret_value(self.text(data))
            return self.text(data)
        return data


NO_SECRETS = Redactor()
