"""CPU and memory of the processes a step loads: the gateway (with its children), the harness.

Read with psutil from the kernel's own counters (/proc): CPU as time used over the step's wall
time, memory as resident set size, sampled while the step runs so a peak is not missed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from realtime_conformance.harness.bench.stats import cpu_percent


def psutil_module() -> Any:
    """psutil, or a UsageError-worthy message naming the extra that brings it."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - depends on the install
        raise RuntimeError("the bench needs psutil and matplotlib: pip install 'realtime-conformance[bench]'") from None
    return psutil


def _tree(pid: int, children: bool = True) -> list[Any]:
    psutil = psutil_module()
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)] if children else [root]
    except psutil.Error:
        return []


def _cpu_and_rss(pid: int, children: bool = True) -> tuple[float, float] | None:
    """CPU seconds (user + system) and RSS bytes of a process and (unless told not to) its descendants."""
    psutil = psutil_module()
    procs = _tree(pid, children)
    if not procs:
        return None
    cpu = rss = 0.0
    for p in procs:
        try:
            times = p.cpu_times()
            cpu += times.user + times.system
            rss += p.memory_info().rss
        except psutil.Error:
            continue
    return cpu, rss


@dataclass
class ProcessMeter:
    """CPU and peak memory of one process tree over a window (``start`` .. ``stop``)."""

    pid: int | None
    children: bool = True
    _cpu0: float = 0.0
    _t0: float = 0.0
    _rss_peak: float = 0.0
    _rss_last: float = 0.0
    _ok: bool = False
    samples: int = field(default=0)

    def start(self) -> "ProcessMeter":
        first = _cpu_and_rss(self.pid, self.children) if self.pid else None
        self._ok = first is not None
        self._t0 = time.perf_counter()
        if first:
            self._cpu0, self._rss_last = first
            self._rss_peak = self._rss_last
        return self

    def sample(self) -> None:
        """Note the memory now (call it every second or so while the step runs)."""
        if not self._ok or self.pid is None:
            return
        now = _cpu_and_rss(self.pid, self.children)
        if now:
            self._rss_last = now[1]
            self._rss_peak = max(self._rss_peak, now[1])
            self.samples += 1

    def stop(self) -> dict[str, Any] | None:
        """cpu_pct (100 = one core), rss_mb at the end and rss_mb_max over the window; None if unmeasurable."""
        if not self._ok or self.pid is None:
            return None
        end = _cpu_and_rss(self.pid, self.children)
        if end is None:
            return None
        cpu, rss = end
        self._rss_peak = max(self._rss_peak, rss)
        return {"cpu_pct": cpu_percent(cpu - self._cpu0, time.perf_counter() - self._t0),
                "rss_mb": round(rss / 2**20, 1), "rss_mb_max": round(self._rss_peak / 2**20, 1)}


@dataclass
class GroupMeter:
    """Several processes metered as one (a gateway running as several instances): CPU and memory summed."""

    meters: list[ProcessMeter]

    def start(self) -> "GroupMeter":
        for m in self.meters:
            m.start()
        return self

    def sample(self) -> None:
        for m in self.meters:
            m.sample()

    def stop(self) -> dict[str, Any] | None:
        parts = [m.stop() for m in self.meters]
        if not parts or any(p is None for p in parts):
            return None
        if len(parts) == 1:
            return parts[0]
        total = {k: round(sum(p[k] for p in parts), 1) for k in ("cpu_pct", "rss_mb", "rss_mb_max")}
        return {**total, "instances": parts}


def rss_bytes(pid: int) -> float:
    """Resident memory of one process (not its children), for memory-per-client figures."""
    return float(psutil_module().Process(pid).memory_info().rss)
