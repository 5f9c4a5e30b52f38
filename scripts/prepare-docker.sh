#!/usr/bin/env bash
# Prepare a Docker engine and the local images the container path of the
# harness needs, on a machine that may have no engine and no reachable
# container registry.
#
# Why this exists: CI and developer machines here reach PyPI and Debian's
# apt repositories but no container registry, so nothing can be pulled. We
# start a private dockerd (everything under one work folder, so it neither
# needs nor disturbs /var/lib/docker) and build every image from Debian
# packages: one debootstrap rootfs, imported once, is the base of the
# RabbitMQ image, the Redis image (Debian's redis-server, for gateway replicas)
# and the Python base the gateway image is built on.
#
# Idempotent: an engine that already answers is used as is, an image that
# already exists is not rebuilt (FORCE_REBUILD=1 rebuilds; the gateway image
# is rebuilt when the contents of its inputs changed), so a second run on the
# same machine takes seconds. Every wait is bounded.
#
# Output: `export DOCKER_HOST=...` lines on stdout (eval them), and the same
# lines in $RTC_DOCKER_DIR/env (source it). Progress goes to stderr.
#
# Environment:
#   RTC_DOCKER_DIR     work folder for dockerd's data, exec root, socket, pid,
#                      log and the rootfs (default /var/tmp/rtc-docker)
#   FORCE_REBUILD=1    rebuild the images even if they exist
#   SKIP_GATEWAY=1     do not build the reference gateway image
#   GATEWAY_DOCKERFILE Dockerfile of the reference gateway, inside the
#                      repository (default gateway/Dockerfile)
#   GATEWAY_INPUTS     paths whose contents decide whether the gateway image
#                      is stale (default: gateway contract pyproject.toml,
#                      plus the Dockerfile)
#   DOCKERD_TIMEOUT    seconds to wait for dockerd (default 30)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${RTC_DOCKER_DIR:-/var/tmp/rtc-docker}"
FORCE_REBUILD="${FORCE_REBUILD:-0}"
DOCKERD_TIMEOUT="${DOCKERD_TIMEOUT:-30}"
SUITE="bookworm"
BASE_IMAGE="rtc/debian-base:${SUITE}"
PYTHON_IMAGE="rtc/python:3-${SUITE}"
RABBIT_IMAGE="rtc/rabbitmq:local"
REDIS_IMAGE="rtc/redis:local"
GATEWAY_IMAGE="rtc/agent-portal-gateway:local"

log() { printf '[prepare-docker %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$WORK"
T0=$SECONDS

# --- 1. an engine -----------------------------------------------------------
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && engine_answers; then
    log "using the engine that answers at ${DOCKER_HOST:-the default socket}"
    ENGINE_HOST="${DOCKER_HOST:-}"
else
    SOCK="$WORK/docker.sock"
    export DOCKER_HOST="unix://$SOCK"
    if command -v docker >/dev/null 2>&1 && engine_answers; then
        log "using the private dockerd already running at $DOCKER_HOST"
    else
        need=()
        command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
        command -v iptables >/dev/null 2>&1 || need+=(iptables)
        command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
        if ((${#need[@]})); then
            log "installing ${need[*]} from Debian's packages"
            export DEBIAN_FRONTEND=noninteractive
            timeout 300 apt-get update -qq >>"$WORK/apt.log" 2>&1 \
                || { tail -n 20 "$WORK/apt.log" >&2; die "apt-get update failed (log: $WORK/apt.log)"; }
            timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >>"$WORK/apt.log" 2>&1 \
                || { tail -n 20 "$WORK/apt.log" >&2; die "apt-get install failed (log: $WORK/apt.log)"; }
        fi
        # A stale pid file from a dockerd that died would stop a new one.
        if [[ -f "$WORK/docker.pid" ]] && ! kill -0 "$(cat "$WORK/docker.pid")" 2>/dev/null; then
            rm -f "$WORK/docker.pid" "$SOCK"
        fi
        mkdir -p "$WORK/data" "$WORK/exec"
        log "starting dockerd (data and sockets under $WORK, log $WORK/dockerd.log)"
        setsid dockerd \
            --data-root "$WORK/data" \
            --exec-root "$WORK/exec" \
            -H "unix://$SOCK" \
            --pidfile "$WORK/docker.pid" \
            >>"$WORK/dockerd.log" 2>&1 </dev/null &
        deadline=$((SECONDS + DOCKERD_TIMEOUT))
        until engine_answers; do
            if ((SECONDS >= deadline)); then
                tail -n 30 "$WORK/dockerd.log" >&2 || true
                die "dockerd did not answer within ${DOCKERD_TIMEOUT} s"
            fi
            sleep 0.2
        done
        log "dockerd ready after $((SECONDS - T0)) s"
    fi
    ENGINE_HOST="$DOCKER_HOST"
fi

{
    if [[ -n "$ENGINE_HOST" ]]; then echo "export DOCKER_HOST=$ENGINE_HOST"; fi
    echo "export TESTCONTAINERS_RYUK_DISABLED=true"
} >"$WORK/env"

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
want_build() { [[ "$FORCE_REBUILD" == 1 ]] || ! image_exists "$1"; }

# --- 2. one Debian rootfs: RabbitMQ and Python ------------------------------
if want_build "$BASE_IMAGE"; then
    command -v debootstrap >/dev/null 2>&1 || {
        export DEBIAN_FRONTEND=noninteractive
        timeout 300 apt-get update -qq >>"$WORK/apt.log" 2>&1 || die "apt-get update failed (log: $WORK/apt.log)"
        timeout 600 apt-get install -y -qq --no-install-recommends debootstrap >>"$WORK/apt.log" 2>&1 \
            || die "apt-get install debootstrap failed (log: $WORK/apt.log)"
    }
    ROOTFS="$WORK/rootfs-$SUITE"
    rm -rf "$ROOTFS"
    log "debootstrap $SUITE minbase with rabbitmq-server and python3 (about a minute)"
    timeout 900 debootstrap --variant=minbase \
        --include=rabbitmq-server,python3,python3-venv,python3-pip,ca-certificates,procps \
        "$SUITE" "$ROOTFS" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
    # The package started nothing (no init in a chroot), but clean what a
    # running node would leave and what an image need not carry.
    rm -rf "$ROOTFS"/var/lib/rabbitmq/mnesia "$ROOTFS"/var/cache/apt/archives/*.deb \
        "$ROOTFS"/var/lib/apt/lists/*
    log "importing the rootfs as $BASE_IMAGE"
    tar -C "$ROOTFS" -c . | timeout 600 docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$BASE_IMAGE" >/dev/null
    rm -rf "$ROOTFS"
    FORCE_CHILDREN=1
else
    log "$BASE_IMAGE exists"
    FORCE_CHILDREN=0
fi

build_small() { # image, dockerfile text; files named in $CTX_CA_FILES go to ca/ in the context,
    # $BUILD_NETWORK (e.g. host) is the build's network
    local image="$1" dockerfile="$2" ctx
    ctx="$(mktemp -d "$WORK/ctx.XXXXXX")"
    printf '%s\n' "$dockerfile" >"$ctx/Dockerfile"
    mkdir -p "$ctx/ca"
    for f in ${CTX_CA_FILES:-}; do cp "$f" "$ctx/ca/"; done
    if ! timeout 600 docker build ${BUILD_NETWORK:+--network "$BUILD_NETWORK"} -t "$image" "$ctx" \
            >"$WORK/build-${image//[\/:]/_}.log" 2>&1; then
        tail -n 30 "$WORK/build-${image//[\/:]/_}.log" >&2
        rm -rf "$ctx"
        die "building $image failed (log: $WORK/build-${image//[\/:]/_}.log)"
    fi
    rm -rf "$ctx"
}

# --- 3. RabbitMQ image -------------------------------------------------------
if [[ "$FORCE_CHILDREN" == 1 ]] || want_build "$RABBIT_IMAGE"; then
    log "building $RABBIT_IMAGE"
    build_small "$RABBIT_IMAGE" "FROM $BASE_IMAGE
# guest may connect from other hosts (the harness and gateway are not in this
# container); the management plugin stays off to start faster.
RUN printf 'loopback_users = none\nlisteners.tcp.default = 5672\n' > /etc/rabbitmq/rabbitmq.conf \\
 && printf '[].\n' > /etc/rabbitmq/enabled_plugins \\
 && mkdir -p /var/lib/rabbitmq/mnesia
ENV RABBITMQ_LOGS=- HOME=/root RABBITMQ_MNESIA_BASE=/var/lib/rabbitmq/mnesia
EXPOSE 5672
CMD [\"/usr/lib/rabbitmq/bin/rabbitmq-server\"]"
else
    log "$RABBIT_IMAGE exists"
fi

# --- 4. Redis image (what gateway replicas share, for --redis container) ------
# Debian's redis-server, installed with apt in the build: --network host, so
# apt reaches Debian's mirror the way the host does (as the gateway build
# reaches PyPI). The harness passes its own command line; this CMD matches it.
if [[ "$FORCE_CHILDREN" == 1 ]] || want_build "$REDIS_IMAGE"; then
    log "building $REDIS_IMAGE (network: host, for Debian's apt)"
    BUILD_NETWORK=host build_small "$REDIS_IMAGE" "FROM $BASE_IMAGE
RUN export DEBIAN_FRONTEND=noninteractive \\
 && apt-get update -qq \\
 && apt-get install -y -qq --no-install-recommends redis-server >/dev/null \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \\
 && redis-server --version
EXPOSE 6379
CMD [\"redis-server\", \"--bind\", \"0.0.0.0\", \"--port\", \"6379\", \"--protected-mode\", \"no\", \"--save\", \"\", \"--appendonly\", \"no\", \"--dir\", \"/tmp\"]"
else
    log "$REDIS_IMAGE exists"
fi

# --- 5. Python base (a venv first on PATH, as `python`/`pip` in python:3) ---
# The host may reach PyPI through a TLS proxy whose CA only the host trusts
# (here: /usr/local/share/ca-certificates). Those extra CAs go into this local
# base image, so `pip install` in a Dockerfile FROM it works as on the host.
if [[ "$FORCE_CHILDREN" == 1 ]] || want_build "$PYTHON_IMAGE"; then
    log "building $PYTHON_IMAGE"
    CTX_CA_FILES="$(ls "${HOST_CA_DIR:-/usr/local/share/ca-certificates}"/*.crt 2>/dev/null || true)" \
    build_small "$PYTHON_IMAGE" "FROM $BASE_IMAGE
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null && python3 -m venv /opt/venv && /opt/venv/bin/python -m pip --version
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD [\"python\"]"
    FORCE_CHILDREN=1
else
    log "$PYTHON_IMAGE exists"
fi

# --- 6. the reference gateway -----------------------------------------------
if [[ "${SKIP_GATEWAY:-0}" != 1 ]]; then
    DOCKERFILE="$(cd "$ROOT" && realpath -m "${GATEWAY_DOCKERFILE:-gateway/Dockerfile}")"
    [[ -f "$DOCKERFILE" ]] || die "no gateway Dockerfile at $DOCKERFILE"
    [[ "$DOCKERFILE" == "$ROOT/"* ]] || die "GATEWAY_DOCKERFILE must be inside $ROOT (the build context)"
    # "Exists" is not enough for the gateway: its code changes between runs
    # on the same machine. The image carries a hash of its inputs' contents
    # (not mtimes: CI clones afresh) and is rebuilt when they differ.
    inputs_hash="$(
        cd "$ROOT"
        # shellcheck disable=SC2086
        find ${GATEWAY_INPUTS:-gateway contract realtime_conformance pyproject.toml} "${DOCKERFILE#$ROOT/}" -type f \
            ! -name '*.pyc' ! -path '*/__pycache__/*' 2>/dev/null | LC_ALL=C sort | xargs -r sha256sum
        docker image inspect -f '{{.Id}}' "$PYTHON_IMAGE"
    )"
    inputs_hash="$(printf '%s' "$inputs_hash" | sha256sum | cut -c1-16)"
    built_hash="$(docker image inspect -f '{{index .Config.Labels "io.rtc-conformance.inputs"}}' \
        "$GATEWAY_IMAGE" 2>/dev/null || true)"
    if [[ "$FORCE_CHILDREN" == 1 || "$FORCE_REBUILD" == 1 || "$built_hash" != "$inputs_hash" ]]; then
        log "building $GATEWAY_IMAGE from ${DOCKERFILE#$ROOT/} (network: host, for PyPI)"
        # --network host: the build's pip reaches PyPI the way the host does,
        # without depending on the bridge's NAT. The context is the repository
        # sent as a tar without .git, .venv and run artefacts (hundreds of MB
        # that no image needs), whether or not a .dockerignore says so.
        if ! tar -C "$ROOT" -c --exclude=./.git --exclude=./.venv --exclude=./.tox \
                --exclude=./reports --exclude=./.work --exclude='*.pyc' --exclude=__pycache__ \
                --exclude=./.pytest_cache --exclude=./.hypothesis . \
            | timeout 900 docker build --network host \
                --build-arg "BASE_IMAGE=$PYTHON_IMAGE" \
                --label "io.rtc-conformance.inputs=$inputs_hash" \
                -f "${DOCKERFILE#$ROOT/}" -t "$GATEWAY_IMAGE" - >"$WORK/gateway-build.log" 2>&1; then
            tail -n 40 "$WORK/gateway-build.log" >&2
            die "building $GATEWAY_IMAGE failed (log: $WORK/gateway-build.log)"
        fi
    else
        log "$GATEWAY_IMAGE exists and its inputs are unchanged"
    fi
fi

log "ready after $((SECONDS - T0)) s; env in $WORK/env"
cat "$WORK/env"
