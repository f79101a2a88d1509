"""Latent-target regression: data2vec's targets, averages of a teacher's normalised layers."""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def data2vec_targets(
    layers: ArrayLike, *, instance_norm: bool = True, layer_norm_targets: bool = False
) -> jax.Array:
    r"""data2vec's regression targets: the mean of a teacher's top layers, each normalised.

    ``layers`` stacks the ``K`` top blocks' outputs, ``(K, N, T, D)`` over ``T`` patch tokens.
    With ``instance_norm`` each layer is normalised per example and feature over the tokens
    (PyTorch's ``instance_norm`` of ``(N, D, T)``: biased variance, eps 1e-5, no affine),

    .. math::
        y_{n,t} = \frac1K \sum_{k} \frac{a^{(k)}_{n,t} - \mu^{(k)}_{n}}
                                       {\sqrt{\sigma^{(k)2}_{n} + 10^{-5}}}

    (Baevski et al. 2022, section 3.3, and 2023, section 3: "the average of the top K blocks
    of the teacher, each instance normalised"); ``layer_norm_targets`` then layer-normalises
    each target over its ``D`` features (no affine). The targets carry no gradient (stop it
    in the caller as well: the teacher is an EMA).

    Examples:
      >>> import jax.numpy as jnp
      >>> layers = jnp.stack([jnp.arange(4.0).reshape(1, 4, 1), jnp.ones((1, 4, 1))])
      >>> [round(float(v), 3) for v in data2vec_targets(layers)[0, :, 0]]
      [-0.671, -0.224, 0.224, 0.671]
    """
    layers = jnp.asarray(layers)
    if layers.ndim != 4:
        raise ValueError(
            f"data2vec_targets expects (K, N, T, D) stacked layer outputs, got {layers.shape}."
        )
    layers = layers.astype(jnp.promote_types(layers.dtype, jnp.float32))
    if instance_norm:
        mean = jnp.mean(layers, axis=2, keepdims=True)
        var = jnp.var(layers, axis=2, keepdims=True)
        layers = (layers - mean) * jax.lax.rsqrt(var + 1e-5)
    targets = jnp.mean(layers, axis=0)
    if layer_norm_targets:
        mean = jnp.mean(targets, axis=-1, keepdims=True)
        var = jnp.var(targets, axis=-1, keepdims=True)
        targets = (targets - mean) * jax.lax.rsqrt(var + 1e-5)
    return targets
