"""Deterministic, resumable per-process batches for training and evaluation (host side, NumPy).

Training batches are a pure function of `(seed, step)`: epoch `e = step // steps_per_epoch` uses
the permutation `np.random.default_rng([seed, e]).permutation(len(source))`, step `s` of the epoch
takes its slice `[s * B, (s + 1) * B)` (B = global batch size, the remainder of an epoch is
dropped), and process `p` of `P` takes the contiguous block `[p * B/P, (p + 1) * B/P)` of it. The
global batch is therefore the same for any number of processes, any call order and any resume
point; the iterator state is only the next step (plus checks). Batches are made ahead by the
Grain pipeline of :mod:`ssl_jax.data.pipeline`, in a thread or in worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ssl_jax.data.base import Source
from ssl_jax.data.errors import DataError
from ssl_jax.data.pipeline import AUTO, resolve_workers, stream

FOREVER = 2**62  # the end of a training stream: it runs until the loop stops


def _check_processes(batch_size: int, process_index: int, process_count: int) -> int:
    """Returns the per-process batch size after validating the arguments."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise DataError(
            f"process_index={process_index}, process_count={process_count}: expected "
            "process_count >= 1 and 0 <= process_index < process_count (jax.process_index())."
        )
    if batch_size < 1 or batch_size % process_count:
        raise DataError(
            f"global batch size {batch_size} is not a positive multiple of the process count "
            f"{process_count}; set the batch size to a multiple of {process_count}."
        )
    return batch_size // process_count


class BatchIterator:
    """Training batches of `source` for one process; see the module docstring for the order.

    Args:
      source: any `Source`.
      global_batch_size: examples per step over all processes; a multiple of `process_count`.
      seed: shuffling seed.
      process_index: this process (`jax.process_index()`).
      process_count: the number of processes (`jax.process_count()`).
      shuffle: False keeps the source order in every epoch.
    """

    def __init__(
        self,
        source: Source,
        *,
        global_batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        shuffle: bool = True,
    ):
        self.local_batch_size = _check_processes(global_batch_size, process_index, process_count)
        self.num_examples = len(source)
        if self.num_examples < global_batch_size:
            raise DataError(
                f"{source.name}: {self.num_examples} examples, fewer than one global batch of "
                f"{global_batch_size}; lower the batch size to at most {self.num_examples}."
            )
        self.source = source
        self.global_batch_size = global_batch_size
        self.seed = int(seed)
        self.process_index = process_index
        self.process_count = process_count
        self.shuffle = shuffle
        self.steps_per_epoch = self.num_examples // global_batch_size
        self._order: tuple[int, np.ndarray] | None = None

    def _epoch_order(self, epoch: int) -> np.ndarray:
        cached = self._order  # One read: safe against the prefetch thread replacing it.
        if cached is not None and cached[0] == epoch:
            return cached[1]
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
        else:
            order = np.arange(self.num_examples)
        self._order = (epoch, order)
        return order

    def global_indices(self, step: int) -> np.ndarray:
        """Source indices of the global batch of `step`, shape `(global_batch_size,)`."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        epoch, within = divmod(int(step), self.steps_per_epoch)
        start = within * self.global_batch_size
        return self._epoch_order(epoch)[start : start + self.global_batch_size]

    def local_indices(self, step: int) -> np.ndarray:
        """Source indices of this process's block of the global batch of `step`."""
        start = self.process_index * self.local_batch_size
        return self.global_indices(step)[start : start + self.local_batch_size]

    def batch_at(self, step: int) -> dict[str, np.ndarray]:
        """`{"images": uint8 (local_bs, H, W, 3), "labels": int32 (local_bs,)}` for `step`
        (a token source's records instead of images: :func:`make_batch`)."""
        return make_batch(self.source, self.local_indices(step))

    def get_state(self, step: int) -> dict[str, Any]:
        """A JSON-able state after `step` steps: resuming runs `batch_at(step)` next."""
        epoch, within = divmod(int(step), self.steps_per_epoch)
        return {
            "step": int(step),
            "epoch": epoch,
            "step_in_epoch": within,
            "steps_per_epoch": self.steps_per_epoch,
            "seed": self.seed,
            "global_batch_size": self.global_batch_size,
            "num_examples": self.num_examples,
            "shuffle": self.shuffle,
        }

    def step_from_state(self, state: dict[str, Any]) -> int:
        """The step to resume at from `get_state`'s dict; `DataError` if the order would differ.

        The process count may change between runs: the global batches do not depend on it.
        """
        for key in ("seed", "global_batch_size", "num_examples", "shuffle"):
            if state.get(key) != getattr(self, key):
                raise DataError(
                    f"cannot resume the data iterator: saved {key}={state.get(key)!r} but this run "
                    f"has {key}={getattr(self, key)!r}, so batches would not continue the saved "
                    "order. Use the saved value, or start from step 0 without the data state."
                )
        return int(state["step"])

    def iterate(
        self, start_step: int = 0, *, workers: int = AUTO, prefetch_size: int = 2
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yields `(step, batch_at(step))` for `step = start_step, start_step + 1, ...` forever,
        `prefetch_size` batches ahead, made by `workers` processes (`data.workers`: 0 is one
        background thread, -1 chooses, see :func:`ssl_jax.data.pipeline.resolve_workers`).
        The batches do not depend on `workers`."""
        workers = resolve_workers(workers, in_memory=in_memory(self.source))
        return stream(self.step_batch, start_step, FOREVER, workers=workers, buffer=prefetch_size)

    def step_batch(self, step: int) -> tuple[int, dict[str, np.ndarray]]:
        return step, self.batch_at(step)


def iterate_eval(
    source: Source,
    *,
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    workers: int = AUTO,
    prefetch_size: int = 2,
) -> Iterator[dict[str, np.ndarray]]:
    """Every example of `source` once, in order, in global batches of `batch_size`.

    Yields `{"images", "labels", "mask"}` for this process: its contiguous block of
    `batch_size // process_count` of each global batch. The last global batch is padded to full
    size with zero images, label 0 and `mask` False, so every process yields the same number of
    batches, `ceil(len(source) / batch_size)`, of the same shape. `workers` as in
    :meth:`BatchIterator.iterate`.
    """
    batches = EvalBatches(source, batch_size, process_index, process_count)
    count = -(-len(source) // batch_size)
    workers = resolve_workers(workers, in_memory=in_memory(source))
    return stream(batches, 0, count, workers=workers, buffer=prefetch_size)


def make_batch(source: Source, indices: np.ndarray) -> dict[str, np.ndarray]:
    """``{"images", "labels"}`` of ``indices``, or for a source whose ``get`` returns a dict
    of records (token sources: ``{"tokens", "segments"}``) those records and ``"labels"``."""
    records, labels = source.get(indices)
    if isinstance(records, dict):
        return {**records, "labels": labels}
    return {"images": records, "labels": labels}


def in_memory(source: Source) -> bool:
    """Whether ``source`` holds decoded arrays (slicing them needs no worker processes)."""
    return bool(getattr(source, "in_memory", False))


class EvalBatches:
    """`EvalBatches(...)(k)`: this process's block of the `k`-th global evaluation batch."""

    def __init__(self, source: Source, batch_size: int, process_index: int, process_count: int):
        self.local = _check_processes(batch_size, process_index, process_count)
        self.source, self.batch_size, self.process_index = source, batch_size, process_index

    def __call__(self, k: int) -> dict[str, np.ndarray]:
        local, num_examples = self.local, len(self.source)
        start = k * self.batch_size + self.process_index * local
        indices = np.arange(start, min(start + local, num_examples))
        spec = getattr(self.source, "record_spec", None)  # token sources
        if spec is None:
            spec = {"images": (self.source.image_shape, np.uint8)}
        batch = {key: np.zeros((local, *shape), dtype) for key, (shape, dtype) in spec.items()}
        batch["labels"] = np.zeros(local, np.int32)
        batch["mask"] = np.zeros(local, bool)
        if len(indices):
            for key, value in make_batch(self.source, indices).items():
                batch[key][: len(indices)] = value
            batch["mask"][: len(indices)] = True
        return batch
