"""Compare two compliance.json files requirement by requirement, and say why each one differs.

CI runs the suites once with processes and once with containers against the same reference
gateway: any difference there is a defect of one path, and fails (the default). It also judges
the Node.js gateway; there differences are expected where the two gateways differ, and
``--report`` prints each with the reasons both reports give, without failing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Differences between the reference gateway and the Node.js example, explained once.
KNOWN = {
    "RECON-4": "python-socketio has no connection state recovery, socket.io 4 does: the Node gateway "
               "replays what a tab missed during a short disconnect, the reference gateway cannot",
}


def load(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in json.loads(path.read_text(encoding="utf-8"))["requirements"]}


def why(entry: dict | None) -> str:
    if entry is None:
        return "not in this catalogue"
    return entry.get("reason") or ("passes" if entry["verdict"] == "PASS" else "no reason recorded")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--report", action="store_true", help="print the differences with reasons; do not fail")
    args = parser.parse_args(argv)
    a, b = load(args.first), load(args.second)
    differ = [rid for rid in sorted(set(a) | set(b)) if (a.get(rid) or {}).get("verdict") != (b.get(rid) or {}).get("verdict")]
    for rid in differ:
        x, y = a.get(rid), b.get(rid)
        print(f"{rid}: {x['verdict'] if x else '-'} in {args.first}, {y['verdict'] if y else '-'} in {args.second}")
        if rid in KNOWN:
            print(f"    why: {KNOWN[rid]}")
        print(f"    {args.first.parent.name or args.first}: {why(x)}")
        print(f"    {args.second.parent.name or args.second}: {why(y)}")
    print(f"{len(set(a) | set(b))} requirements compared, {len(differ)} differ")
    return 0 if args.report or not differ else 1


if __name__ == "__main__":
    sys.exit(main())
