"""prefetch: same items, background production, exceptions propagated, clean shutdown."""

import threading
import time

import pytest

from ssl_jax.data import prefetch


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "ssl_jax-prefetch"]


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


@pytest.mark.parametrize("size", [0, 1, 2, 5])
def test_same_items_as_plain_iteration(size):
    assert list(prefetch(iter(range(50)), size)) == list(range(50))
    assert list(prefetch(iter([]), size)) == []


def test_produces_ahead_in_the_background_but_bounded():
    produced = []

    def items():
        for i in range(100):
            produced.append(threading.current_thread().name)
            yield i

    it = prefetch(items(), size=2)
    assert next(it) == 0
    assert wait_for(lambda: len(produced) >= 3)
    time.sleep(0.2)
    assert len(produced) <= 4  # One consumed, two queued, one waiting to be queued.
    assert set(produced) == {"ssl_jax-prefetch"}
    it.close()


def test_exception_reaches_the_consumer_after_earlier_items():
    def items():
        yield 1
        yield 2
        raise RuntimeError("worker failed at item 3")

    it = prefetch(items(), size=2)
    assert next(it) == 1 and next(it) == 2
    with pytest.raises(RuntimeError, match="worker failed at item 3"):
        next(it)


def test_closing_stops_the_worker_of_an_infinite_iterator():
    def forever():
        i = 0
        while True:
            yield i
            i += 1

    before = set(prefetch_threads())
    it = prefetch(forever(), size=2)
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    (worker,) = set(prefetch_threads()) - before
    assert worker.daemon
    it.close()
    assert wait_for(lambda: not worker.is_alive())
