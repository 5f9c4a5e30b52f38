"""``python -m realtime_conformance.gateway`` and the ``agent-portal-gateway`` console script.

A launcher may import gateway modules, patch one seam, then call ``main()``
(see README.md, "Patchable seams").
"""

from __future__ import annotations

import sys

from . import app


def main() -> None:
    """Run the gateway with settings from the environment; exit with its code."""
    sys.exit(app.run())


if __name__ == "__main__":
    main()
