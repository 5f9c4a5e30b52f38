"""How much memory the gateway under test holds, read from outside it.

Robustness checks ask whether memory grows with what hostile clients send, so they need a number
for the gateway's whole footprint that does not depend on the gateway's cooperation, and no extra
dependency (psutil is the bench's extra, which a suite user does not install):

- a gateway the harness started as a command: the resident set size (RSS) of its process tree,
  summed from ``/proc``: every process in its session (the harness starts it in a new one) and
  every descendant of it;
- a container: the same tree on this host, found by ``docker inspect``'s host PID, when this
  host's ``/proc`` shows it; else ``docker stats``' figure (cgroup usage less inactive file
  cache, as the ``docker stats`` command prints it);
- a URL target: no number, and the reason why (a check then says UNKNOWN).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class MemoryReading:
    """One reading: ``bytes`` (None when unknowable, ``unknown`` then says why) and how it was read."""

    bytes: int | None
    source: str = ""
    processes: int = 0
    unknown: str = ""

    @property
    def mib(self) -> float | None:
        return None if self.bytes is None else round(self.bytes / 2**20, 1)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) from /proc/PID/stat; None if the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return int(fields[1]), int(fields[3])


def _rss(pid: int) -> int | None:
    """Resident bytes of one process (statm's second field, in pages); None if it is gone."""
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return None


def process_tree(pid: int) -> list[int]:
    """``pid``, the processes of its session (when it leads one) and all its descendants."""
    if _stat(pid) is None:
        return []
    parents: dict[int, int] = {}
    session: set[int] = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        got = _stat(int(entry.name))
        if got is None:
            continue
        parents[int(entry.name)] = got[0]
        if got[1] == pid:
            session.add(int(entry.name))
    tree, frontier = {pid} | session, [pid, *session]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sorted(tree)


def tree_rss(pid: int) -> MemoryReading:
    """RSS summed over ``process_tree(pid)``, from /proc."""
    if not PROC.is_dir():
        return MemoryReading(None, unknown="no /proc on this host (memory is read from /proc, Linux only)")
    pids = process_tree(pid)
    sizes = [s for s in (_rss(p) for p in pids) if s is not None]
    if not sizes:
        return MemoryReading(None, unknown=f"process {pid} is not running")
    return MemoryReading(sum(sizes), source="/proc RSS of the process tree", processes=len(sizes))


def docker_stats_bytes(stats: dict[str, Any]) -> int | None:
    """``docker stats``' memory figure from the API's stats: usage less inactive file cache
    (cgroup v2 ``inactive_file``, v1 ``total_inactive_file``), as the docker CLI computes it."""
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if not isinstance(usage, int):
        return None
    details = memory.get("stats") or {}
    cache = details.get("inactive_file", details.get("total_inactive_file", 0))
    return max(0, usage - (cache if isinstance(cache, int) and cache < usage else 0))


def _container_reading(container: Any) -> MemoryReading:
    """A container's memory: its host process tree if /proc shows it, else docker stats."""
    try:
        container.reload()
        pid = int(container.attrs.get("State", {}).get("Pid") or 0)
    except Exception as exc:  # noqa: BLE001 - the engine's errors are many; any means no reading
        return MemoryReading(None, unknown=f"docker inspect failed: {type(exc).__name__}: {exc}"[:300])
    if pid > 0:
        with contextlib.suppress(OSError):
            if container.id[:12] in (PROC / str(pid) / "cgroup").read_text():
                reading = tree_rss(pid)
                if reading.bytes is not None:
                    return MemoryReading(reading.bytes, source="/proc RSS of the container's process tree "
                                         "(host PID from docker inspect)", processes=reading.processes)
    try:
        stats = container.stats(stream=False, one_shot=True)
    except Exception as exc:  # noqa: BLE001
        return MemoryReading(None, unknown=f"docker stats failed: {type(exc).__name__}: {exc}"[:300])
    value = docker_stats_bytes(stats)
    if value is None:
        return MemoryReading(None, unknown="docker stats gave no memory usage (is the memory cgroup enabled?)")
    return MemoryReading(value, source="docker stats (cgroup usage less inactive file cache)")


def gateway_memory(gateway: Any) -> MemoryReading:
    """The memory of a gateway the harness started (a command or a container); UNKNOWN-worthy
    (``bytes`` None, with ``unknown`` saying why) for a URL target or a gateway that is not running."""
    if getattr(gateway, "_process", None) is not None:  # a command the harness started
        pid = getattr(gateway, "pid", None)
        return tree_rss(pid) if isinstance(pid, int) else MemoryReading(None, unknown="the gateway is not running")
    managed = getattr(gateway, "_container", None)
    if managed is not None:
        wrapped = getattr(managed, "_docker_container", lambda: None)()
        if wrapped is None:
            return MemoryReading(None, unknown="the gateway's container is not running")
        return _container_reading(wrapped)
    return MemoryReading(None, unknown="the gateway is a URL target: the harness cannot see its processes, "
                         "so its memory cannot be read")
