"""Where the training state lives on the mesh: replicated (data parallel), or sharded (FSDP).

Data parallel (the default) keeps a full copy of the state (parameters, optimizer state, EMA
targets, queues, centers) on every device. With ``mesh.fsdp=True`` (ZeRO-3 / FSDP) every
large array of the state is split over the ``data`` axis instead, so each device holds about
``1 / mesh.size`` of it; the jitted step all-gathers a parameter where it is used and
reduce-scatters its gradient (XLA's SPMD partitioner inserts both). The batch stays split
over the same axis, so the arithmetic, and the results, are those of data parallelism.

The rule is big_vision's ``fsdp`` strategy, applied to every leaf of the state by shape rather
than by module annotations, so every backbone, head and method state is covered without a
name to maintain: an array of at least ``min_size`` elements is split along its largest
dimension that the device count divides (the first such among equals); smaller arrays (biases,
norms, step counters) and arrays no dimension of which divides stay replicated. Method state
that is global by nature (a MoCo queue, a DINO center) is still one global array under
``jax.jit``'s global view: splitting it changes where its rows live, not its values.

Activations stay split over the batch: left to itself, the partitioner propagates a weight's
split into the activations it multiplies (a ViT's ``qkv`` output split along its features,
the input gathered whole over the batch on every device), which costs more memory per device
than data parallelism. Under :func:`batch_sharded_activations` (the train step enters it when
the state is split) the models pin their activations to batch-over-``data`` with
:func:`constrain_batch` at every matrix product and block boundary, the role of MaxText's and
big_vision's logical activation annotations (``activation_batch``), so the partitioner gathers
the weights instead. Outside it :func:`constrain_batch` returns its input: the data-parallel
program is unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax.parallel import DATA_AXIS, replicated

DEFAULT_MIN_SIZE = 2**14  # elements (64 KiB of float32): smaller leaves are not worth a gather

_ACTIVATIONS: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar(
    "ssl_jax_batch_sharded_activations", default=None
)


@contextlib.contextmanager
def batch_sharded_activations(mesh: Mesh | None) -> Iterator[None]:
    """While tracing inside, :func:`constrain_batch` splits activations over ``mesh``'s data
    axis (``None``: it does nothing)."""
    token = _ACTIVATIONS.set(mesh)
    try:
        yield
    finally:
        _ACTIVATIONS.reset(token)


def constrain_batch(x: jax.Array) -> jax.Array:
    """``x`` constrained to be split along its first (batch) dimension over the data axis,
    inside :func:`batch_sharded_activations`; otherwise, or when the devices do not divide
    that dimension, ``x`` itself."""
    mesh = _ACTIVATIONS.get()
    if mesh is None or x.ndim == 0 or x.shape[0] % mesh.size:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(DATA_AXIS)))


def fsdp_spec(shape: tuple[int, ...], devices: int, min_size: int = DEFAULT_MIN_SIZE) -> P:
    """The partition of one array of ``shape``: its largest dimension divisible by ``devices``
    split over the data axis, or replicated (``P()``) when it is small or none divides."""
    if devices <= 1 or int(np.prod(shape, dtype=np.int64)) < max(min_size, 1):
        return P()
    candidates = [(-size, axis) for axis, size in enumerate(shape) if size % devices == 0]
    if not candidates:
        return P()
    _, axis = min(candidates)
    return P(*([None] * axis + [DATA_AXIS]))


def state_shardings(abstract: Any, mesh: Mesh, *, fsdp: bool, min_size: int = DEFAULT_MIN_SIZE):
    """A tree of ``NamedSharding`` matching ``abstract`` (arrays or ``ShapeDtypeStruct``s):
    every leaf replicated, or with ``fsdp`` each leaf split by :func:`fsdp_spec`."""
    if not fsdp:
        return jax.tree.map(lambda _: replicated(mesh), abstract)
    return jax.tree.map(
        lambda x: NamedSharding(mesh, fsdp_spec(tuple(x.shape), mesh.size, min_size)), abstract
    )


def replicate(tree: Any, mesh: Mesh) -> Any:
    """``tree`` with every array whole on every device of ``mesh`` (an all-gather of what FSDP
    split; a no-op copy of what is already replicated). Works across processes: a jitted
    identity with replicated outputs."""
    return jax.jit(lambda t: t, out_shardings=replicated(mesh))(tree)


def bytes_per_device(tree: Any, shardings: Any) -> int:
    """The bytes one device holds of ``tree`` laid out as ``shardings`` (the largest shard of
    each leaf: what the busiest device stores)."""
    total = 0
    for x, sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings), strict=True):
        shard = sharding.shard_shape(tuple(x.shape))
        total += int(np.prod(shard, dtype=np.int64)) * np.dtype(x.dtype).itemsize
    return total
