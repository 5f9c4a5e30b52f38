#!/usr/bin/env bash
# One entry point for a fresh machine: sets up .venv once, then runs what you ask for.
#   bash scripts/dev.sh conformance [pytest args]   the conformance suites against the reference gateway
#   bash scripts/dev.sh test [pytest args]          every test of the project (suites included)
#   bash scripts/dev.sh cluster [pytest args]       the cluster area: the reference gateway as 2 instances (reports/cluster/)
#   bash scripts/dev.sh cluster-containers [args]   the same with the gateway image as 2 containers, Redis and RabbitMQ
#                                                   in containers (builds the local images first; reports/cluster-containers/)
set -euo pipefail
cd "$(dirname "$0")/.."

need_broker() {
  if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    echo "installing rabbitmq-server (the harness starts private nodes of it; the system service is not used)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
  fi
}

need_redis() {
  if ! command -v redis-server >/dev/null; then
    echo "installing redis-server (cluster runs start a private one; the system service is not used)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  fi
}

setup() {
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import realtime_conformance.harness, realtime_conformance.gateway, socketio, aio_pika, uvicorn" 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[dev]"
  fi
}

what="${1:-}"; shift || true
case "$what" in
  conformance) need_broker; setup; exec .venv/bin/python -m pytest -m realtime "$@" ;;
  test)        need_broker; need_redis; setup; exec .venv/bin/python -m pytest "$@" ;;
  cluster)     need_broker; need_redis; setup
               exec .venv/bin/python -m pytest suites -m cluster --gateway-replicas 2 --report-dir reports/cluster "$@" ;;
  cluster-containers)
               setup; eval "$(bash scripts/prepare-docker.sh)"
               exec .venv/bin/python -m pytest suites -m cluster --gateway-replicas 2 --broker container \
                 --rabbitmq-image rtc/rabbitmq:local --gateway-image rtc/agent-portal-gateway:local \
                 --report-dir reports/cluster-containers "$@" ;;
  setup)       need_broker; need_redis; setup ;;
  *) echo "usage: bash scripts/dev.sh {conformance|test|cluster|cluster-containers|setup} [pytest args]" >&2; exit 2 ;;
esac
