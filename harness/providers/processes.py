"""Child processes the harness starts, each in its own process group, always reaped.

Every ManagedProcess is recorded in a module-level registry; ``reap_all`` kills
whatever is still alive and runs at interpreter exit, so a failed run or a
Ctrl-C leaves no broker, epmd or gateway behind.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from realtime_conformance.harness.redaction import strip_terminal_codes

_LIVE: "set[ManagedProcess]" = set()
_LOCK = threading.Lock()


@dataclass(frozen=True)
class StopResult:
    """How one SIGTERM went: how long until the process was gone, and whether it took a SIGKILL.

    ``waited_s`` is how long the harness gave it before the SIGKILL; ``elapsed_s`` runs from the
    SIGTERM to the moment the process was gone (past ``waited_s`` only when it was killed)."""

    waited_s: float
    elapsed_s: float
    escalated: bool
    returncode: int | None

    def as_dict(self) -> dict[str, float | bool | int | None]:
        return {"waited_s": round(self.waited_s, 2), "elapsed_s": round(self.elapsed_s, 2),
                "escalated_to_sigkill": self.escalated, "returncode": self.returncode}


class ManagedProcess:
    """One command run in a new session, its output appended to ``log_path``."""

    last_stop: StopResult | None = None  # how the latest terminate() went

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        if not argv:
            raise ValueError(f"{name}: empty command; give the program and its arguments")
        self.argv = list(argv)
        self.name = name
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                self._popen = subprocess.Popen(
                    self.argv,
                    env=self.env,
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except FileNotFoundError:
                program = self.argv[0]
                relative = os.sep in program and not os.path.isabs(program)
                where = f" (relative to {self.cwd or os.getcwd()})" if relative else ""
                raise FileNotFoundError(
                    f"{self.name}: cannot run {program!r}{where}: not found; install it or fix the command"
                ) from None
        with _LOCK:
            _LIVE.add(self)

    def _signal_group(self, sig: int) -> None:
        if self._popen is None:
            return
        try:
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole process group and wait for the leader."""
        self._signal_group(signal.SIGKILL)
        self._wait(10.0)
        self._forget()

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the group; SIGKILL it if it has not exited within ``timeout`` s.

        How it went (elapsed time, whether the SIGKILL was needed) is kept in ``last_stop``."""
        if self._popen is None:
            return None
        already_gone = self._popen.poll() is not None
        started = time.monotonic()
        self._signal_group(signal.SIGTERM)
        escalated = not self._wait(timeout)
        if escalated:
            self._signal_group(signal.SIGKILL)
            self._wait(10.0)
        elapsed = 0.0 if already_gone else time.monotonic() - started
        # Anything the leader left in its group (a forked beam.smp, say) goes too.
        self._signal_group(signal.SIGKILL)
        self._forget()
        self.last_stop = StopResult(waited_s=timeout, elapsed_s=elapsed, escalated=escalated,
                                    returncode=self._popen.returncode)
        return self._popen.returncode

    def _wait(self, timeout: float) -> bool:
        assert self._popen is not None
        try:
            self._popen.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _forget(self) -> None:
        with _LOCK:
            _LIVE.discard(self)

    def log_size(self) -> int:
        """Bytes in the whole log file so far: an offset for ``log_range``."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_range(self, start: int, end: int | None = None) -> bytes:
        """The log's bytes from offset ``start`` to ``end`` (the end of the file if None), as written."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(start)
                return log.read(-1 if end is None else max(0, end - start))
        except FileNotFoundError:
            return b""

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        # Colours and cursor codes out: every caller shows the tail in a message or a report.
        return strip_terminal_codes(data[-max_bytes:].decode("utf-8", errors="replace"))


def processes_with_env(name: str, value: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose environment has ``name=value``.

    Children inherit the environment, so a unique variable set for one run finds
    everything that run started, however deep, even after its parent died.
    """
    wanted = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((int(entry.name), cmdline.strip()))
        except OSError:
            continue
    return found


def reap_all() -> None:
    """Kill every process group the harness started that is still registered."""
    with _LOCK:
        procs = list(_LIVE)
    for proc in procs:
        proc.kill()


atexit.register(reap_all)
