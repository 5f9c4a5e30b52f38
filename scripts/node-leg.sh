#!/usr/bin/env bash
# The Node.js gateway judged as its users' CI would judge it: the harness installed from a wheel
# built from this checkout into a fresh venv, an empty folder holding only the gateway and its
# config, and one command run there. Reports go to reports/node-gateway/ of this repository;
# the cluster area, with the gateway as two instances on a private Redis, to reports/node-gateway/cluster/.
#   bash scripts/node-leg.sh [extra arguments for realtime-conformance]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d /tmp/rtc-node-leg.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
say() { echo "=== node-leg: $*"; }

command -v node >/dev/null && command -v npm >/dev/null || { echo "node-leg: Node.js 20 and npm are needed" >&2; exit 2; }
say "building the wheel"
python3 -m pip wheel -q --no-deps -w "$WORK/dist" "$ROOT" 2>&1 | grep -v "^WARNING: Location" || true
wheel=$(ls "$WORK"/dist/realtime_conformance-*.whl)
say "a fresh venv with $(basename "$wheel")"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "$wheel" 2>&1 | grep -v "^WARNING: Location" || true
"$WORK/venv/bin/python" -m pip show -f realtime-conformance | awk '/^Files:/{f=1;next} f{split($1,p,"/"); print p[1]}' \
    | grep -v -e '\.dist-info$' -e '^\.\.$' -e '^$' | sort -u | sed 's/^/    top-level name: /'
say "the gateway's folder: its code and its pytest.ini, nothing else"
mkdir -p "$WORK/project"
(cd "$ROOT/examples/node-gateway" && tar --exclude=node_modules -cf - .) | tar -C "$WORK/project" -xf -
(cd "$WORK/project" && npm ci --no-audit --no-fund --loglevel=error)
say "realtime-conformance"
cd "$WORK/project"
"$WORK/venv/bin/realtime-conformance" -p no:cacheprovider --report-dir "$ROOT/reports/node-gateway" "$@"
say "realtime-conformance --gateway-replicas 2 -m cluster"
"$WORK/venv/bin/realtime-conformance" -p no:cacheprovider --gateway-replicas 2 -m cluster \
    --report-dir "$ROOT/reports/node-gateway/cluster" "$@"
