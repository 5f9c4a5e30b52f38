"""Exit non-zero unless two compliance.json files give every requirement the same verdict.

CI runs the suites once with processes and once with containers; the target is the same
reference gateway, so any difference is a defect of one path, not of the gateway.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def verdicts(path: Path) -> dict[str, str]:
    return {r["id"]: r["verdict"] for r in json.loads(path.read_text())["requirements"]}


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: compare-verdicts.py FIRST/compliance.json SECOND/compliance.json", file=sys.stderr)
        return 2
    first, second = (Path(a) for a in sys.argv[1:])
    a, b = verdicts(first), verdicts(second)
    differ = {rid: (a.get(rid), b.get(rid)) for rid in sorted(set(a) | set(b)) if a.get(rid) != b.get(rid)}
    for rid, (x, y) in differ.items():
        print(f"{rid}: {x} in {first}, {y} in {second}")
    print(f"{len(a)} requirements compared, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
