"""The vhost stock: made ahead of need, in small batches, never more than taken plus the stock."""

from __future__ import annotations

import threading

import pytest

from realtime_conformance.harness.providers.vhosts import VhostPool


class Recorder:
    """Stands in for rabbitmqctl's import: records each batch it was asked for."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[int] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, names: list[str], user: str) -> list[str]:
        with self.lock:
            self.batches.append(len(names))
        return [] if self.fail else list(names)


def test_the_stock_is_made_at_once_and_refilled_as_taken():
    make = Recorder()
    pool = VhostPool(make, "harness", ahead=2, batch=3)
    taken = [pool.take(timeout=5) for _ in range(5)]
    pool.close()
    assert all(taken) and len(set(taken)) == 5
    assert max(make.batches) <= 3
    assert sum(make.batches) <= 5 + 2  # what was taken plus the stock, no more


def test_no_more_than_the_limit_is_made_and_take_then_says_none():
    make = Recorder()
    pool = VhostPool(make, "harness", ahead=2, batch=2, limit=3)
    got = [pool.take(timeout=5) for _ in range(4)]
    pool.close()
    assert got[:3] == [g for g in got[:3] if g] and got[3] is None
    assert sum(make.batches) == 3


def test_a_broker_that_cannot_make_vhosts_gives_none_at_once():
    pool = VhostPool(Recorder(fail=True), "harness")
    assert pool.take(timeout=5) is None
    pool.close()


@pytest.mark.parametrize("kwargs", [{"ahead": 0}, {"batch": 0}, {"limit": 0}])
def test_sizes_below_one_are_refused_with_their_values(kwargs):
    with pytest.raises(ValueError, match="each must be at least 1"):
        VhostPool(Recorder(), "harness", **kwargs)
