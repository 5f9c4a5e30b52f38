"""Capabilities a target may declare it lacks (``--lacks``), held once, and what each one switches off.

``Conformance.require(name)`` accepts only a name registered here, so a typo in a suite fails loudly
instead of never matching. Which requirements a capability turns into N/A is not written down by
hand: it is read from the suites' source (their ``require(...)`` calls, and the checks that judge
another way when a capability is missing), so README's table cannot drift from what the suites do.
``python -m realtime_conformance.harness.catalogue capabilities`` prints that table; a test checks
README has it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Capability:
    name: str
    lacking: str  # what a target that declares it lacking is like


CAPABILITIES: dict[str, Capability] = {c.name: c for c in (
    Capability("rest", "no REST API (yet): every check that calls REST is N/A"),
    Capability("event-read-model", "REST is not fed by the consumed events (its data come from a database or "
                                   "another service), so an event published in a check cannot be expected there; "
                                   "REST's token checks and CORS still run"),
    Capability("restart", "the harness may not stop, restart or kill the gateway (a `--gateway-url` target "
                          "lacks it by itself)"),
    Capability("polling", "only the websocket transport is offered"),
    Capability("broker-restart", "the broker may not be restarted (an external broker cannot be, whatever is declared)"),
    Capability("dead-letter-queue", "malformed messages are not published to `<queue>.dlq`; FAULT-2 then asks "
                                    "the gateway's log to name each one (by its AMQP message_id or its body's "
                                    "SHA-256) instead, which a URL target cannot show (UNKNOWN)"),
)}

NAMES: tuple[str, ...] = tuple(CAPABILITIES)

# Calls a suite makes with no capability argument, and the capability each stands for.
_IMPLIED = {"require_restartable_broker": "broker-restart"}


def validate(name: str) -> Capability:
    """The registered capability ``name``; a ValueError naming the known ones otherwise."""
    try:
        return CAPABILITIES[name]
    except KeyError:
        raise ValueError(f"unknown capability {name!r}: register it in harness/capabilities.py "
                         f"(known: {', '.join(NAMES)})") from None


def _requirement_of(fn: ast.AST) -> tuple[str, ...]:
    """The IDs of ``@pytest.mark.requirement("ID", ...)`` on a test function."""
    out: list[str] = []
    for deco in getattr(fn, "decorator_list", []):
        if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "requirement"):
            out += [a.value for a in deco.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return tuple(out)


def _uses(fn: ast.AST) -> tuple[set[str], set[str]]:
    """The capabilities a test function requires (N/A without them) and those it only asks about
    (``settings.has(...)`` or ``... in settings.lacks``: it judges another way without them)."""
    required: set[str] = set()
    asked: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            first = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
            if node.func.attr == "require" and isinstance(first, str):
                required.add(first)
            elif node.func.attr in _IMPLIED:
                required.add(_IMPLIED[node.func.attr])
            elif node.func.attr == "has" and isinstance(first, str):
                asked.add(first)
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)
              and any(isinstance(c, ast.Attribute) and c.attr == "lacks" for c in node.comparators)):
            asked.add(node.left.value)
    return required, asked


def scan(suites_dir: Path | None = None) -> dict[str, dict[str, list[str]]]:
    """capability -> {"na": requirement IDs reported N/A without it, "judged": IDs judged another way}.

    Read from the suites' source, not imported: a test function's ``require("x")`` makes its
    requirements N/A when ``x`` is lacking. A name no registered capability has is a ValueError."""
    if suites_dir is None:
        from realtime_conformance import suites
        suites_dir = Path(suites.__file__).parent
    found: dict[str, dict[str, set[str]]] = {name: {"na": set(), "judged": set()} for name in NAMES}
    for path in sorted(suites_dir.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            ids = _requirement_of(node)
            if not ids:
                continue
            required, asked = _uses(node)
            for name in required | asked:
                if name not in CAPABILITIES:
                    raise ValueError(f"{path.name}::{node.name} uses the unknown capability {name!r}: "
                                     f"register it in harness/capabilities.py (known: {', '.join(NAMES)})")
            for name in required:
                found[name]["na"].update(ids)
            for name in asked - required:
                found[name]["judged"].update(ids)
    return {name: {kind: sorted(ids, key=_order) for kind, ids in kinds.items()} for name, kinds in found.items()}


def _order(rid: str) -> int:
    """Catalogue order (CONN, AUTH, ORIG, ...), as CONFORMANCE.md lists them."""
    from realtime_conformance.harness.judging.catalogue import REQUIREMENTS
    return next((n for n, r in enumerate(REQUIREMENTS) if r.id == rid), len(REQUIREMENTS))


def render_markdown(suites_dir: Path | None = None) -> str:
    """README's capability table."""
    found = scan(suites_dir)
    lines = ["| `--lacks` | the target | N/A | judged another way |", "|---|---|---|---|"]
    for name, cap in CAPABILITIES.items():
        na = ", ".join(found[name]["na"]) or "-"
        judged = ", ".join(found[name]["judged"]) or "-"
        lines.append(f"| `{name}` | {cap.lacking} | {na} | {judged} |")
    return "\n".join(lines) + "\n"
