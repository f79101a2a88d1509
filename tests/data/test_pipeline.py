"""The Grain pipeline: the same items in order with a thread or worker processes, errors at
their position (from a worker too), workers stopped on close, the worker count rules."""

import multiprocessing
import time

import numpy as np
import pytest

from ssl_jax.data import DataError, pipeline, stream


class Square:
    """Picklable, so worker processes can run it; fails at ``bad``."""

    def __init__(self, bad=None):
        self.bad = bad

    def __call__(self, i):
        if i == self.bad:
            raise DataError(f"/data/cat/{i}.jpg: cannot identify image file")
        return i, np.full((2, 2), i * i)


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize("workers,buffer", [(0, 0), (0, 1), (0, 3), (2, 2)])
def test_the_same_items_in_order_whatever_the_workers(workers, buffer):
    items = list(stream(Square(), 3, 40, workers=workers, buffer=buffer))
    assert [i for i, _ in items] == list(range(3, 40))
    assert all((x == i * i).all() for i, x in items)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_error_reaches_the_consumer_at_its_position(workers):
    items = stream(Square(bad=7), 0, 100, workers=workers)
    assert [next(items)[0] for _ in range(7)] == list(range(7))
    with pytest.raises(DataError, match="/data/cat/7.jpg: cannot identify image file"):
        next(items)


def test_closing_stops_the_worker_processes():
    before = set(multiprocessing.active_children())
    items = stream(Square(), 0, 2**62, workers=2)
    assert [next(items)[0] for _ in range(5)] == [0, 1, 2, 3, 4]
    started = set(multiprocessing.active_children()) - before
    assert len(started) >= 2
    items.close()
    assert wait_for(lambda: not any(p.is_alive() for p in started))


def test_worker_counts():
    assert pipeline.default_workers(1) == 1
    assert pipeline.default_workers(2) == 1
    assert pipeline.default_workers(9) == 8
    assert pipeline.default_workers(200) == pipeline.MAX_AUTO_WORKERS
    assert pipeline.resolve_workers(-1, in_memory=True) == 0
    assert pipeline.resolve_workers(-1, in_memory=False) == pipeline.default_workers()
    assert pipeline.resolve_workers(3, in_memory=True) == 3
    with pytest.raises(ValueError, match="data.workers=-2"):
        pipeline.resolve_workers(-2, in_memory=False)


def test_the_default_counts_the_cores_this_process_may_use():
    import os

    assert pipeline.usable_cpus() == len(os.sched_getaffinity(0))
