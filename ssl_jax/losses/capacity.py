"""Manifold-capacity losses: nuclear norms of the views' embeddings (MMCR)."""

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from ssl_jax.explicit_sharding import sharding_of
from ssl_jax.losses.normalize import l2_normalize


def _replicated(x: jax.Array) -> jax.Array:
    """``x`` replicated on its Explicit mesh (an SVD has no batch-sharded form), else ``x``."""
    sharding = sharding_of(x)
    if sharding is None:
        return x
    return jax.sharding.reshard(x, NamedSharding(sharding.mesh, P()))


def nuclear_norm(x: ArrayLike) -> jax.Array:
    """The sum of the singular values of the last two axes of ``x`` (one per leading index)."""
    return jnp.sum(jnp.linalg.svd(jnp.asarray(x), compute_uv=False), axis=-1)


def mmcr_loss(z: ArrayLike, *, lambda_: float = 0.0) -> jax.Array:
    r"""Maximum manifold capacity representations, the MMCR loss.

    ``z[i, k]`` embeds view :math:`k` of image :math:`i`. With every embedding
    L2-normalised, :math:`Z_i = [z_{i,1}, \dots, z_{i,K}]` (the ``(D, K)`` views of image
    :math:`i`) and the ``(N, D)`` matrix :math:`C` of the centroids
    :math:`c_i = \frac1K \sum_k z_{i,k}`,

    .. math::
        \mathcal{L} = \frac{\lambda}{N} \sum_i \lVert Z_i \rVert_* - \lVert C \rVert_*

    where :math:`\lVert\cdot\rVert_*` is the nuclear norm (Yerxa et al. 2023, eq. 2 with the
    optional local term). This is the authors' ``MMCR_Loss``: the global term is *not*
    divided by the batch size (only the local one is), and their default is
    :math:`\lambda = 0`. Maximising the centroids' nuclear norm spreads the images'
    centroids over many directions (each close to unit length only when its views agree).

    The SVD runs on the whole batch; under a global-view ``jax.jit`` with a batch-sharded
    ``z`` on Explicit axes it is gathered first.

    Args:
      z: ``(N, K, D)`` embeddings of ``K >= 2`` views of ``N`` images.
      lambda_: :math:`\lambda`, the weight of the per-image (local) nuclear norm.

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.stack([jnp.eye(3), jnp.eye(3)], axis=1)  # 3 images, 2 identical views
      >>> round(float(mmcr_loss(z)), 4)
      -3.0

    References:
      Yerxa, Kuang, Simoncelli, Chung, "Learning Efficient Coding of Natural Images with
      Maximum Manifold Capacity Representations", NeurIPS 2023.
      https://arxiv.org/abs/2303.03307
    """
    z = jnp.asarray(z)
    if z.ndim != 3 or z.shape[1] < 2:
        raise ValueError(
            f"mmcr_loss expects (N, K, D) embeddings of K >= 2 views per image, got {z.shape}."
        )
    z = l2_normalize(z.astype(jnp.promote_types(z.dtype, jnp.float32)))
    z = _replicated(z)
    loss = -nuclear_norm(jnp.mean(z, axis=1))
    if lambda_ != 0.0:
        loss = loss + lambda_ * jnp.mean(nuclear_norm(z))
    return loss
