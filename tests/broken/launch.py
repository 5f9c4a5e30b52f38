"""Run the reference gateway with one broken behaviour: ``python tests/broken/launch.py VARIANT``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from tests.broken.variants import VARIANTS  # noqa: E402


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in VARIANTS:
        sys.exit(f"usage: launch.py VARIANT\nvariants: {', '.join(sorted(VARIANTS))}")
    VARIANTS[sys.argv[1]]()
    from realtime_conformance.gateway.__main__ import main as gateway_main

    gateway_main()


if __name__ == "__main__":
    main()
