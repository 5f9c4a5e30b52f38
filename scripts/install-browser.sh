#!/usr/bin/env bash
# What the browser checks (-m browser) need, as a user gets it: Chromium from Debian's package,
# Playwright from the [browser] extra (it launches that Chromium by path and downloads no browser)
# and socket.io-client, pinned, packed by npm into ~/.cache/realtime-conformance at first use.
# Usage: bash scripts/install-browser.sh [python]   (default: .venv/bin/python). Needs root for apt.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-.venv/bin/python}
if ! command -v chromium >/dev/null && [ ! -x /usr/bin/chromium ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
"$py" -c 'import playwright' 2>/dev/null || "$py" -m pip install -q -e ".[browser]"
command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
"$py" -c 'from realtime_conformance.harness.wire.browser import client_script; print("socket.io-client:", client_script())'
chromium --version 2>/dev/null || /usr/bin/chromium --version
