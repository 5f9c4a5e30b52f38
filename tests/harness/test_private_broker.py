"""The private RabbitMQ node leaves nothing behind, even when a rabbitmqctl call races its close.

A CI run once failed on an `epmd -daemon` outliving the broken-gateway runs: a rabbitmqctl call
from another thread started its Erlang VM after close() had stopped the node's epmd and removed
its files, and that VM started an epmd daemon of its own, outside every process group we reap.
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid

from realtime_conformance.harness.providers.broker import RABBITMQ_SERVER, PrivateRabbitNode
from realtime_conformance.harness.providers.processes import processes_with_env


def test_the_cli_never_starts_an_epmd_of_its_own():
    """rabbitmqctl with the node's environment, once the node and its epmd are gone: no daemon."""
    mark = ("RTC_PRIVATE_BROKER_TEST", uuid.uuid4().hex)
    node = PrivateRabbitNode()
    node.start()
    env = {**node.env(), mark[0]: mark[1]}
    node.close()
    done = subprocess.run([str(RABBITMQ_SERVER.with_name("rabbitmqctl")), "status"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0  # nothing to talk to
    assert processes_with_env(*mark) == []


def test_calls_racing_close_end_cleanly_and_start_nothing():
    mark = ("RTC_PRIVATE_BROKER_TEST", uuid.uuid4().hex)
    os.environ[mark[0]] = mark[1]
    try:
        node = PrivateRabbitNode()
        node.start()
        answers: list[object] = []
        callers = [threading.Thread(target=lambda: answers.append(node.queues()), daemon=True) for _ in range(3)]
        for caller in callers:
            caller.start()
        node.close()
        for caller in callers:
            caller.join(timeout=60)
        assert not any(caller.is_alive() for caller in callers)
        assert node.queues() is None  # closed: the CLI is not even started
        assert [pid for pid, cmd in processes_with_env(*mark) if pid != os.getpid()] == []
    finally:
        del os.environ[mark[0]]
