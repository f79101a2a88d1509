"""The one input pipeline: Grain, over a pure function of the position in the stream.

Every stream here is ``make(i)`` for ``i = start, start + 1, ..., stop - 1`` (a training step,
an evaluation batch), so the items depend on ``i`` only: not on the number of workers, the
number of processes, or where a run resumed. Grain computes them ahead of the consumer:

- ``workers == 0``: in one background thread of this process (in-memory arrays: slicing is
  all there is to do);
- ``workers > 0``: in that many worker processes (Grain's ``mp_prefetch``: worker ``k``
  computes the items ``k, k + W, ...`` of the stream, and they come back in order), where
  decoding and resizing images runs in parallel, beyond one core.

Workers ignore SIGTERM and SIGINT (the training process handles them) and exit when the
training process is gone. An exception raised
by ``make`` (a corrupt file: ``DataError`` naming it) reaches the consumer
at that item's position, from a worker too. Close the returned generator (the training loop
does, or its garbage collection) to stop the workers.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grain
from absl import flags

T = TypeVar("T")

AUTO = -1  # data.workers: choose from the CPU count (see default_workers)
MAX_AUTO_WORKERS = 16
ORPHAN_POLL_S = 1.0  # how often a worker checks that the training process is still there


def default_workers(cpu_count: int | None = None) -> int:
    """Worker processes when ``data.workers`` is -1: every usable core but one (this process's
    own: it feeds the devices), at least 1, at most :data:`MAX_AUTO_WORKERS`."""
    cpus = cpu_count if cpu_count is not None else usable_cpus()
    return max(1, min(MAX_AUTO_WORKERS, cpus - 1))


def usable_cpus() -> int:
    """The cores this process may run on: its affinity mask (what Slurm or a container grants),
    not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int, *, in_memory: bool) -> int:
    """``data.workers`` as a count: -1 chooses (no processes for a source already decoded in
    memory, else :func:`default_workers`); 0 is a thread; N > 0 is N processes."""
    if workers == AUTO:
        return 0 if in_memory else default_workers()
    if workers < 0:
        raise ValueError(
            f"data.workers={workers}: expected -1 (choose from the CPU count), 0 (one "
            "background thread) or a number of worker processes."
        )
    return int(workers)


def _init_worker(worker: int, count: int) -> None:
    """In each worker: leave signals to the training process, and end with it.

    A preemption's SIGTERM (or a Ctrl-C) often reaches every process of the group: the workers
    ignore it, and the training process stops cleanly and then stops them. When the training
    process is killed (kill -9, the OOM killer) nothing stops them: they notice they were
    orphaned and exit."""
    del worker, count
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="ssl_jax-orphan-watch", daemon=True).start()


def stream(
    make: Callable[[int], T],
    start: int,
    stop: int,
    *,
    workers: int = 0,
    buffer: int = 2,
) -> Iterator[T]:
    """Yields ``make(i)`` for ``i`` in ``range(start, stop)``, computed ahead (see the module
    docstring). ``make`` must be picklable when ``workers > 0`` (it is sent to the workers);
    ``buffer`` items are prepared ahead per worker (or by the thread). ``buffer <= 0``
    computes each item in the caller's thread when it is asked for."""
    if buffer <= 0:
        for i in range(start, stop):
            yield make(i)
        return
    if workers < 0:
        raise ValueError(f"workers must be >= 0 here, got {workers}; see resolve_workers.")
    if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags (a library user's
        flags.FLAGS.mark_as_parsed()  # script may never parse them): use the defaults
    dataset = grain.MapDataset.range(start, stop).map(make)
    items = dataset.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=buffer))
    if workers:
        items = items.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=buffer),
            worker_init_fn=_init_worker,
        )
    iterator = iter(items)
    try:
        yield from iterator
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
