"""Helpers for tests that start the Node example gateway directly: its dependencies, a private
Redis, and one `node src/index.js` process with its own environment names."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from realtime_conformance.harness.providers.ports import free_port
from realtime_conformance.harness.providers.processes import ManagedProcess
from realtime_conformance.harness.providers.redis_server import PrivateRedis  # noqa: F401 (tests import it from here)

NODE_GATEWAY = Path(__file__).resolve().parents[1] / "examples" / "node-gateway"
NPM_LOCK = NODE_GATEWAY / ".npm-install.lock"


def node_modules_complete() -> bool:
    """Every dependency of package.json is installed, and npm finished (it writes its hidden
    lock file last): a checkout's node_modules may predate a dependency added since, or be the
    half of an install that was interrupted."""
    deps = json.loads((NODE_GATEWAY / "package.json").read_text())["dependencies"]
    modules = NODE_GATEWAY / "node_modules"
    return (modules / ".package-lock.json").is_file() and all(
        (modules / name / "package.json").is_file() for name in deps)


def ensure_node_modules(timeout: float = 900.0) -> Path:
    """`npm ci` unless node_modules is complete; returns node_modules.

    Under an exclusive lock on NPM_LOCK, so a CI script installing in the background (which
    takes the same lock, see .ci/run) and the tests that need the modules never run `npm ci`
    over each other (it deletes node_modules first). Compiling better-sqlite3 takes about two
    minutes here: no prebuilt binary can be downloaded."""
    deadline = time.monotonic() + timeout
    with NPM_LOCK.open("a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another `npm ci` held {NPM_LOCK} for {timeout:.0f} s") from None
                time.sleep(0.5)
        if not node_modules_complete():
            done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_GATEWAY, capture_output=True,
                                  text=True, timeout=max(1.0, deadline - time.monotonic()))
            assert done.returncode == 0, (
                f"`npm ci` in {NODE_GATEWAY} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return NODE_GATEWAY / "node_modules"


class NodeGateway:
    """One Node gateway process (its own variable names: see examples/node-gateway/README.md)."""

    def __init__(self, workdir: Path, **env: str) -> None:
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        self.env.update(SOCKET_HOST="127.0.0.1", SOCKET_PORT=str(self.port), JWT_AUDIENCE="agent-portal",
                        ENGINE_PING_INTERVAL_MS="1000", ENGINE_PING_TIMEOUT_MS="2000")
        self.env.update(env)
        self.proc = ManagedProcess(["node", "src/index.js"], name="node-gateway",
                                   log_path=workdir / f"node-gateway-{self.port}.log", env=self.env, cwd=NODE_GATEWAY)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(f"{self.url}{path}")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def start(self, timeout: float = 20.0) -> "NodeGateway":
        """Start and wait until its consumer is subscribed (active or standby)."""
        self.proc.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.running:
                raise RuntimeError(f"node gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.get("/health")[1].get("consumer") == "consuming":
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"node gateway not consuming within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.proc.log_tail(20000)

    def stop(self) -> int | None:
        return self.proc.terminate(timeout=5)

    def kill(self) -> None:
        self.proc.kill()


if __name__ == "__main__":  # .ci/run installs the modules in the background while other tests run
    print(ensure_node_modules())
