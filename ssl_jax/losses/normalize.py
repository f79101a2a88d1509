"""Row normalisation shared by the losses, the methods and the kNN evaluator."""

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """``x / max(||x||, 1e-12)`` along ``axis``, as ``torch.nn.functional.normalize``.

    Written with ``rsqrt`` of the clamped squared norm: one reduction, and a finite
    gradient at ``x = 0``.
    """
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), 1e-24))
