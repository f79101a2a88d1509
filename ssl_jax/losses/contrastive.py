"""Contrastive losses over two batches of embeddings."""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def _check_pair(name: str, z1: jax.Array, z2: jax.Array) -> None:
    if z1.ndim != 2 or z2.ndim != 2:
        raise ValueError(
            f"{name} expects two (batch, dim) arrays, got shapes {z1.shape} and {z2.shape}."
        )
    if z1.shape != z2.shape:
        raise ValueError(
            f"{name} expects z1 and z2 of the same shape (two views of one batch), "
            f"got {z1.shape} and {z2.shape}."
        )


def nt_xent(z1: ArrayLike, z2: ArrayLike, *, temperature: float = 0.1) -> jax.Array:
    r"""Normalised temperature-scaled cross entropy (NT-Xent), the SimCLR loss.

    ``z1[i]`` and ``z2[i]`` are projections of two views of image ``i``. All 2N
    embeddings are L2-normalised and each is an anchor whose positive is the other
    view of the same image and whose negatives are the other 2N - 2 embeddings:

    .. math::
        \ell_{i,j} = -\log \frac{\exp(s_{i,j}/\tau)}
                                {\sum_{k \ne i} \exp(s_{i,k}/\tau)},
        \qquad s_{i,k} = \frac{z_i^\top z_k}{\lVert z_i\rVert \lVert z_k\rVert}

    and the loss is the mean of :math:`\ell` over all 2N anchors (SimCLR eq. 1 and
    Algorithm 1). Computed with a log-sum-exp, so large ``1/temperature`` is stable.
    Under a global-view ``jax.jit`` the batch axis already spans every device, so the
    negatives come from the global batch without any collective.

    Args:
      z1: ``(N, D)`` projections of the first views.
      z2: ``(N, D)`` projections of the second views.
      temperature: :math:`\tau > 0`.

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.eye(4)
      >>> round(float(nt_xent(z, z, temperature=0.1)), 4)
      0.0003

    References:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual
      Representations", ICML 2020. https://arxiv.org/abs/2002.05709
    """
    z1 = jnp.asarray(z1)
    z2 = jnp.asarray(z2)
    _check_pair("nt_xent", z1, z2)
    if temperature <= 0:
        raise ValueError(f"nt_xent needs temperature > 0, got {temperature}.")
    n = z1.shape[0]
    z = jnp.concatenate([z1, z2], axis=0)
    z = z.astype(jnp.promote_types(z.dtype, jnp.float32))
    z = z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), 1e-24))
    logits = (z @ z.T) / temperature
    logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
    positive = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    log_prob = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_prob, positive[:, None], axis=-1))
