#!/usr/bin/env bash
# Stop the private dockerd that scripts/prepare-docker.sh started, after
# removing what the harness left on it, so a run leaves no engine, container,
# network or shim process behind. Every wait is bounded.
#
# An engine that prepare-docker.sh did not start (no pid file in the work
# folder) is left running; only containers and networks carrying the
# harness's label are removed from it.
#
# The images stay in the work folder's data root, so the next
# prepare-docker.sh is fast; PURGE=1 deletes the whole work folder too.
#
# Environment: RTC_DOCKER_DIR (default /var/tmp/rtc-docker), PURGE=1,
# STOP_TIMEOUT (seconds for dockerd to exit on SIGTERM, default 20).
set -euo pipefail

WORK="${RTC_DOCKER_DIR:-/var/tmp/rtc-docker}"
STOP_TIMEOUT="${STOP_TIMEOUT:-20}"
LABEL="io.rtc-conformance.harness"
PIDFILE="$WORK/docker.pid"

log() { printf '[stop-docker %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

remove() { # $1: "containers" or "networks"; the rest: filters for the listing
    local what="$1" ids
    shift
    if [[ "$what" == containers ]]; then
        ids="$(timeout 20 docker ps -aq "$@" 2>/dev/null || true)"
        [[ -z "$ids" ]] && return 0
        log "removing containers: $(echo $ids)"
        # shellcheck disable=SC2086
        timeout 60 docker rm -f -v $ids >/dev/null 2>&1 || log "some containers could not be removed"
    else
        ids="$(timeout 20 docker network ls -q "$@" 2>/dev/null || true)"
        [[ -z "$ids" ]] && return 0
        log "removing networks: $(echo $ids)"
        # shellcheck disable=SC2086
        timeout 60 docker network rm $ids >/dev/null 2>&1 || log "some networks could not be removed"
    fi
}

if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    PID="$(cat "$PIDFILE")"
    export DOCKER_HOST="unix://$WORK/docker.sock"
    # Our own engine: everything on it is ours.
    remove containers
    remove networks --filter type=custom
    log "stopping dockerd (pid $PID)"
    kill -TERM "$PID" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$PID" 2>/dev/null; then
        log "dockerd did not exit within ${STOP_TIMEOUT} s: SIGKILL"
        kill -KILL "$PID" 2>/dev/null || true
        sleep 1
    fi
    # dockerd's own containerd and any shim it left are found by the exec root
    # in their command lines, never by name alone.
    for pid in $(pgrep -f -- "$WORK/exec" 2>/dev/null || true); do
        log "killing leftover process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80))"
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -f "$PIDFILE" "$WORK/docker.sock"
    # Mounts dockerd left under the work folder (overlay, netns) would keep it busy.
    { grep -o " $WORK/[^ ]*" /proc/self/mounts 2>/dev/null || true; } | sort -r | while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done
    # dockerd leaves its default bridge interface behind; with no engine
    # left running, nothing else can be using it.
    if ! pgrep -x dockerd >/dev/null 2>&1 && ip link show docker0 >/dev/null 2>&1; then
        ip link delete docker0 2>/dev/null || log "could not delete the docker0 interface"
    fi
    log "dockerd stopped"
elif timeout 10 docker info >/dev/null 2>&1; then
    log "the engine at ${DOCKER_HOST:-the default socket} was not started by prepare-docker.sh; removing only the harness's containers and networks"
    remove containers --filter "label=$LABEL"
    remove networks --filter "label=$LABEL"
else
    log "no private dockerd running (no live pid in $PIDFILE) and no engine answers: nothing to do"
fi

if [[ "${PURGE:-0}" == 1 ]]; then
    log "deleting $WORK"
    rm -rf "$WORK"
fi
