"""Functional bridge between Flax NNX modules and the pure-pytree train step.

A module is split once into ``(graphdef, params, batch_stats)``: ``graphdef`` is static (close
over it, or pass it as a static argument), ``params`` holds the ``nnx.Param`` variables and
``batch_stats`` the ``nnx.BatchStat`` ones (BatchNorm running mean/var), both ``nnx.State``.
An ``nnx.State`` is a registered pytree whose leaves are plain arrays (each wrapped in a pytree
``nnx.Variable`` node), so ``jax.tree.map``, ``jax.jit``, ``jax.grad``, optax,
``jax.device_put`` with shardings and Orbax ``StandardSave``/``StandardRestore`` (given the
abstract target) work on it unchanged. :class:`~ssl_jax.models.ModuleDef` bundles a
``graphdef`` with its pure ``init`` / ``apply``.
"""

from functools import partial
from typing import Any

import jax
import numpy as np
from flax import nnx


def split_module(module: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """Splits ``module`` into ``(graphdef, params, batch_stats)``.

    ``batch_stats`` is an empty ``nnx.State`` for modules without BatchNorm. Raises
    ``ValueError`` if the module holds other state (e.g. RNG streams kept by ``nnx.Dropout``),
    which the functional train step would silently drop.
    """
    graphdef, params, batch_stats, rest = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
    if jax.tree.leaves(rest):
        raise ValueError(
            f"{type(module).__name__} holds state that is neither nnx.Param nor nnx.BatchStat: "
            f"{rest}. The functional API carries only these two; pass RNG keys as arguments "
            "instead of storing nnx.Rngs in the module."
        )
    return graphdef, params, batch_stats


def apply_module(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    batch_stats: nnx.State,
    x: Any,
    *,
    train: bool,
    **kwargs: Any,
) -> tuple[Any, nnx.State]:
    """Runs the module on ``x``; returns ``(output, new_batch_stats)``.

    ``train=True``: BatchNorm normalises with the batch statistics and updates its running
    averages, returned as ``new_batch_stats``. ``train=False``: BatchNorm uses the running
    averages and ``batch_stats`` is returned unchanged. The mode is set on the merged copy with
    ``Module.train()`` / ``Module.eval()`` (Flax's ``use_running_average``/``deterministic``
    attributes), so it never leaks into ``graphdef``.

    ``kwargs`` go to the module's ``__call__``. Those holding arrays (``jax.Array``, including
    typed PRNG keys and tracers, or ``np.ndarray``, possibly inside a pytree: e.g.
    ``keep_indices=...``, ``rngs=jax.random.key(...)``) are traced, so new values reuse the
    compiled program and may be traced values of the caller; the others (``return_all=True``,
    ``None``, Python numbers and strings) are static and must be hashable: each new value
    retraces.

    Works inside ``jax.jit`` and under ``jax.grad`` w.r.t. ``params``: the merge uses
    ``copy=True``, otherwise updating BatchNorm statistics under ``grad`` inside ``jit`` fails
    with ``TraceContextError`` (the merged module would reuse Variables of an outer trace).
    """
    static, dynamic = {}, {}
    for name, value in kwargs.items():
        is_array = any(isinstance(v, jax.Array | np.ndarray) for v in jax.tree.leaves(value))
        (dynamic if is_array else static)[name] = value
    out, new_stats = _apply(
        graphdef, params, batch_stats, x, train, tuple(sorted(static.items())), dynamic
    )
    return out, (new_stats if train else batch_stats)


@partial(jax.jit, static_argnums=(0, 4, 5))
def _apply(graphdef, params, batch_stats, x, train, static_kwargs, dynamic_kwargs):
    # A nested jit: inlined into the caller's program, but traced once per graphdef and
    # input shape. Tracing NNX's BatchNorm updates directly in a large outer trace grows
    # quadratically with the graph (Variable.set_value inspects the tracer's sharding).
    module = nnx.merge(graphdef, params, batch_stats, copy=True)
    if train:
        module.train()
    else:
        module.eval()
    out = module(x, **dict(static_kwargs), **dynamic_kwargs)
    return out, nnx.state(module, nnx.BatchStat)


__all__ = [
    "apply_module",
    "split_module",
]
