"""`prefetch(iterator, size)`: compute the next items of an iterator in a background thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()
_POLL_S = 0.1


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(iterator: Iterable[T], size: int = 2) -> Iterator[T]:
    """Yields the items of `iterator`, producing up to `size` ahead in a daemon thread.

    An exception raised by `iterator` is re-raised to the consumer at the position where it
    occurred. Closing the returned generator (or dropping it) stops the worker; being a daemon
    thread, it never blocks interpreter exit. `size <= 0` iterates in the caller's thread.
    """
    if size <= 0:
        yield from iterator
        return
    items: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in iterator:
                if not put(item):
                    return
        except BaseException as e:  # Handed to the consumer thread.
            put(_Raised(e))
            return
        put(_DONE)

    thread = threading.Thread(target=work, name="ssl_jax-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
