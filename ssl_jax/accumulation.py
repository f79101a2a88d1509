"""Gradient accumulation (``optim.accumulation_steps``): one optimizer step over ``k``
micro-batches computed one after the other inside the jitted step, so that a device holds the
activations of ``1 / k`` of its batch at a time.

Micro-batch ``j`` is the rows ``j, j + k, j + 2k, ...`` of the global batch (each one still
split over every device) and draws its randomness (views, masks) from ``fold_in(key, j)``.
The loss and the gradient are the means of the micro-batches', the metrics too; the method
state the loss returns (a DINO center: an EMA of a batch mean) is the mean of the
micro-batches' (integer leaves: the last one's). The optimizer then steps once.

That equals the step on the whole batch only when the loss is a mean of per-example terms
given the step's method state. Methods declare it (``Method.batch_terms == ""``); every other
method names what couples its examples (in-batch negatives, a queue, batch statistics,
Sinkhorn) and is refused, as is any network with BatchNorm, whose statistics would be per
micro-batch. See docs/big-models.md.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax.parallel import DATA_AXIS


def _has_batch_norm(method_state: Any) -> bool:
    leaves = jax.tree_util.tree_leaves_with_path(method_state)
    return any("batch_stats" in str(getattr(k, "key", "")) for path, _ in leaves for k in path)


def check(method, steps: int, *, batch_size: int, mesh: Mesh):
    """Raise ``ValueError`` (one line with the fix) unless ``method`` can accumulate ``steps``
    micro-batches of ``batch_size / steps`` that split over ``mesh``."""
    if steps == 1:
        return
    fix = "set optim.accumulation_steps=1 (or lower the per-device batch instead)"
    if steps < 1:
        raise ValueError(f"optim.accumulation_steps={steps}: expected 1 or more.")
    if method.batch_terms:
        raise ValueError(
            f"optim.accumulation_steps={steps}: {method.name} cannot accumulate gradients "
            f"exactly: {method.batch_terms}; {fix}."
        )
    if _has_batch_norm(jax.eval_shape(method.init, jax.random.key(0))[1]):
        raise ValueError(
            f"optim.accumulation_steps={steps}: this {method.name} network has BatchNorm, "
            "whose statistics would be those of each micro-batch, not of the batch; use a "
            f"backbone and heads without BatchNorm (a ViT), or {fix}."
        )
    if batch_size % (steps * mesh.size):
        raise ValueError(
            f"data.batch_size={batch_size} does not split into {steps} micro-batches over "
            f"{mesh.size} devices; use a multiple of {steps * mesh.size}."
        )


def micro_batches(batch: dict, steps: int, mesh: Mesh) -> dict:
    """``(B, ...)`` arrays as ``(steps, B / steps, ...)``: micro-batch ``j`` is rows
    ``j::steps``, split over the devices as the batch was."""

    def split(x):
        x = jnp.swapaxes(x.reshape(x.shape[0] // steps, steps, *x.shape[1:]), 0, 1)
        spec = P(None, DATA_AXIS, *([None] * (x.ndim - 2)))
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    return jax.tree.map(split, batch)


def _mean_over_micro_batches(x):
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.mean(x, axis=0).astype(x.dtype)
    return x[-1]


def accumulate(grad_fn, steps: int, mesh: Mesh, params, method_state, batch, key, *args):
    """``grad_fn``'s ``((loss, (method_state, metrics)), grads)`` averaged over ``steps``
    micro-batches (see the module docstring); ``args`` pass through unchanged."""
    micro = micro_batches(batch, steps, mesh)

    def body(grads_sum, inputs):
        j, part = inputs
        (loss, (state, metrics)), grads = grad_fn(
            params, method_state, part, jax.random.fold_in(key, j), *args
        )
        return jax.tree.map(jnp.add, grads_sum, grads), (loss, state, metrics)

    zeros = jax.tree.map(jnp.zeros_like, params)
    grads, outputs = jax.lax.scan(body, zeros, (jnp.arange(steps), micro))
    loss, state, metrics = jax.tree.map(_mean_over_micro_batches, outputs)
    grads = jax.tree.map(lambda g: g / steps, grads)
    return (loss, (state, metrics)), grads
