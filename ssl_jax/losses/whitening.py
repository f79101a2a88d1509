"""Whitening losses: the views' embeddings decorrelated over sub-batches, then compared (W-MSE)."""

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from ssl_jax.explicit_sharding import replicated_result, sharding_of
from ssl_jax.losses.contrastive import _check_pair
from ssl_jax.losses.normalize import l2_normalize


def cholesky_whiten(x: ArrayLike, *, eps: float = 0.0) -> jax.Array:
    r"""``(M, D)`` rows whitened by the Cholesky factor of their covariance.

    With :math:`\bar x = x - \operatorname{mean}(x)`,
    :math:`\Sigma = (1 - \epsilon)\, \bar x^\top \bar x / (M - 1) + \epsilon I` and
    :math:`\Sigma = L L^\top` (Cholesky), the rows become :math:`L^{-1} \bar x_m`, whose
    covariance is the identity (Ermolov et al. 2021, eq. 4; the authors' ``Whitening2d``,
    shrinkage ``eps``). Gradients pass through the mean and :math:`L`. Needs
    :math:`M > D` rows for a full-rank covariance when ``eps == 0``.
    """
    x = jnp.asarray(x)
    m, d = x.shape
    centred = x - jnp.mean(x, axis=0)
    covariance = jnp.matmul(centred.T, centred, out_sharding=replicated_result(centred)) / (m - 1)
    covariance = (1.0 - eps) * covariance + eps * jnp.eye(d, dtype=x.dtype)
    factor = jnp.linalg.cholesky(covariance)
    return jax.scipy.linalg.solve_triangular(factor, centred.T, lower=True).T


def wmse_loss(
    z1: ArrayLike,
    z2: ArrayLike,
    key: jax.Array,
    *,
    w_size: int = 128,
    w_iter: int = 1,
    eps: float = 0.0,
) -> jax.Array:
    r"""Whitening MSE, the W-MSE loss of two views.

    For each of ``w_iter`` random partitions of the batch into sub-batches of ``w_size``
    images (the same partition for both views), each view's sub-batch is whitened on its own
    (:func:`cholesky_whiten`), and the whitened pairs are compared by the MSE of their
    L2-normalised rows:

    .. math::
        \mathcal{L} = \frac{1}{T} \sum_{t=1}^{T} \frac1N \sum_i
            \Big\lVert \frac{w^{(1)}_{t,i}}{\lVert w^{(1)}_{t,i}\rVert}
                     - \frac{w^{(2)}_{t,i}}{\lVert w^{(2)}_{t,i}\rVert} \Big\rVert^2
        = \frac1T \sum_t \Big(2 - \frac2N \sum_i \cos(w^{(1)}_{t,i}, w^{(2)}_{t,i})\Big)

    (Ermolov et al. 2021, eq. 6-7 and the authors' ``WMSE.forward`` with
    ``norm_mse_loss``). Whitening removes the collapsed solutions, so no negatives are
    needed; several sub-batches per batch (``w_size < N``) and several partitions
    (``w_iter``) are the paper's way to get more whitening matrices from one batch.

    Args:
      z1: ``(N, D)`` embeddings of the first views.
      z2: ``(N, D)`` embeddings of the second views.
      key: a PRNG key for the partitions.
      w_size: images per sub-batch; divides ``N`` and exceeds ``D`` (unless ``eps > 0``).
      w_iter: the number of partitions averaged.
      eps: the covariance shrinkage of :func:`cholesky_whiten` (0 in the paper).

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Raises:
      ValueError: when ``w_size`` does not divide ``N``, ``w_size <= D`` with ``eps == 0``,
        or ``w_iter < 1``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> z = jax.random.normal(jax.random.key(0), (8, 3))
      >>> round(float(wmse_loss(z, 2.0 * z, jax.random.key(1), w_size=4)), 4)
      0.0

    References:
      Ermolov, Siarohin, Sangineto, Sebe, "Whitening for Self-Supervised Representation
      Learning", ICML 2021. https://arxiv.org/abs/2007.06346
    """
    z1 = jnp.asarray(z1)
    z2 = jnp.asarray(z2)
    _check_pair("wmse_loss", z1, z2)
    n, d = z1.shape
    if w_size < 2 or n % w_size:
        raise ValueError(
            f"wmse_loss needs w_size >= 2 dividing the batch N={n}, got w_size={w_size}; "
            "choose w_size among the divisors of the global batch."
        )
    if w_size <= d and eps == 0.0:
        raise ValueError(
            f"wmse_loss needs w_size > D={d} (a sub-batch of {w_size} rows has a singular "
            "covariance): raise method.w_size, lower proj_dim, or set eps > 0."
        )
    if w_iter < 1:
        raise ValueError(f"wmse_loss needs w_iter >= 1, got {w_iter}.")
    dtype = jnp.promote_types(jnp.result_type(z1, z2), jnp.float32)
    pair = jnp.stack([z1, z2]).astype(dtype)
    sharding = sharding_of(pair)
    if sharding is not None:  # sub-batches are gathered across the batch: replicate it
        pair = jax.sharding.reshard(pair, NamedSharding(sharding.mesh, P()))
    whiten = jax.vmap(jax.vmap(lambda x: cholesky_whiten(x, eps=eps)))
    total = 0.0
    for k in jax.random.split(key, w_iter):
        groups = pair[:, jax.random.permutation(k, n)].reshape(2, n // w_size, w_size, d)
        w = l2_normalize(whiten(groups))
        total = total + 2.0 - 2.0 * jnp.mean(jnp.sum(w[0] * w[1], axis=-1))
    return total / w_iter
