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
# From a copy of the tree: a build writes into its source folder (build/, *.egg-info), and CI runs
# this leg beside tox, which builds the same package from the checkout.
mkdir -p "$WORK/src"
tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./.tox --exclude=./reports --exclude=./.work \
    --exclude=./build --exclude='*.egg-info' --exclude=node_modules --exclude=__pycache__ -cf - . | tar -C "$WORK/src" -xf -
python3 -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src" 2>&1 | grep -v "^WARNING: Location" || true
wheel=$(ls "$WORK"/dist/realtime_conformance-*.whl)
say "a fresh venv with $(basename "$wheel")"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "$wheel" 2>&1 | grep -v "^WARNING: Location" || true
"$WORK/venv/bin/python" -m pip show -f realtime-conformance | awk '/^Files:/{f=1;next} f{split($1,p,"/"); print p[1]}' \
    | grep -v -e '\.dist-info$' -e '^\.\.$' -e '^$' | sort -u | sed 's/^/    top-level name: /'
say "the gateway's folder: its code and its pytest.ini, nothing else"
mkdir -p "$WORK/project"
(cd "$ROOT/examples/node-gateway" && tar --exclude=node_modules -cf - .) | tar -C "$WORK/project" -xf -
# Its dependencies from its lock file. The checkout's own node_modules, when a finished `npm ci`
# left one (tests/nodekit.py installs it), is the same install: copy it rather than compile
# better-sqlite3 a second time (about two minutes here, no prebuilt binary being reachable).
if [ -f "$ROOT/examples/node-gateway/node_modules/.package-lock.json" ]; then
    say "its node_modules: the checkout's finished npm ci, copied"
    cp -a "$ROOT/examples/node-gateway/node_modules" "$WORK/project/"
else
    (cd "$WORK/project" && npm ci --no-audit --no-fund --loglevel=error)
fi
say "realtime-conformance"
cd "$WORK/project"
"$WORK/venv/bin/realtime-conformance" -p no:cacheprovider --report-dir "$ROOT/reports/node-gateway" "$@"
say "realtime-conformance --gateway-replicas 2 -m cluster"
"$WORK/venv/bin/realtime-conformance" -p no:cacheprovider --gateway-replicas 2 -m cluster \
    --report-dir "$ROOT/reports/node-gateway/cluster" "$@"
