"""Contrastive losses over two batches of embeddings."""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ssl_jax.explicit_sharding import diagonal, leading_axis_result
from ssl_jax.losses.normalize import l2_normalize


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
    logits = jnp.matmul(z, z.T, out_sharding=leading_axis_result(z)) / temperature
    logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
    positive = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    log_prob = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_prob, positive[:, None], axis=-1))


def info_nce(
    query: ArrayLike, key: ArrayLike, negatives: ArrayLike, *, temperature: float
) -> jax.Array:
    r"""InfoNCE with a bank of negatives, the MoCo loss.

    ``query[i]`` (online encoder) and ``key[i]`` (momentum encoder) embed two views of
    image ``i``; ``negatives`` is the queue of keys from earlier batches, shared by all
    queries. With every vector L2-normalised, each query scores its own key against
    the K negatives:

    .. math::
        \ell_i = -\log \frac{\exp(q_i^\top k_i/\tau)}
                            {\exp(q_i^\top k_i/\tau) + \sum_{j=1}^{K} \exp(q_i^\top n_j/\tau)}

    and the loss is the mean of :math:`\ell_i` over the N queries (MoCo eq. 1 and
    Algorithm 1: logits ``[l_pos, l_neg] / T``, cross-entropy with label 0). Computed
    with a log-softmax, so small ``temperature`` is stable.

    All three inputs are normalised here. The authors' ``moco/builder.py`` normalises
    ``q`` and ``k`` in the forward pass and stores normalised keys in the queue, so for
    MoCo's vectors this is idempotent; it makes the loss correct for raw embeddings too.

    The loss passes gradients to every input. MoCo trains only the query encoder: the
    method should wrap ``key`` and ``negatives`` in ``jax.lax.stop_gradient``.

    Args:
      query: ``(N, D)`` query embeddings.
      key: ``(N, D)`` positive keys, ``key[i]`` for ``query[i]``.
      negatives: ``(K, D)`` negative keys (the queue; the authors store it as ``(D, K)``).
      temperature: :math:`\tau > 0` (0.07 in MoCo v1, 0.2 in MoCo v2).

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> e = jnp.eye(4)
      >>> round(float(info_nce(e[:2], e[:2], e[2:], temperature=1.0)), 4)
      0.5514

    References:
      He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
      CVPR 2020. https://arxiv.org/abs/1911.05722
    """
    query = jnp.asarray(query)
    key = jnp.asarray(key)
    negatives = jnp.asarray(negatives)
    if query.ndim != 2 or key.ndim != 2 or negatives.ndim != 2:
        raise ValueError(
            "info_nce expects (N, D) query and key and (K, D) negatives, got shapes "
            f"{query.shape}, {key.shape} and {negatives.shape}."
        )
    if query.shape != key.shape:
        raise ValueError(
            f"info_nce expects query and key of the same shape (one positive key per query), "
            f"got {query.shape} and {key.shape}."
        )
    if negatives.shape[1] != query.shape[1]:
        raise ValueError(
            f"info_nce expects negatives of the embedding size D={query.shape[1]} of the "
            f"queries, got negatives of shape {negatives.shape}; pass the queue as (K, D)."
        )
    if temperature <= 0:
        raise ValueError(f"info_nce needs temperature > 0, got {temperature}.")
    dtype = jnp.promote_types(jnp.result_type(query, key, negatives), jnp.float32)
    q = l2_normalize(query.astype(dtype))
    k = l2_normalize(key.astype(dtype))
    n = l2_normalize(negatives.astype(dtype))
    positive = jnp.sum(q * k, axis=-1, keepdims=True)
    logits = jnp.concatenate([positive, q @ n.T], axis=-1) / temperature
    return -jnp.mean(jax.nn.log_softmax(logits, axis=-1)[:, 0])


def moco_v3_ctr(query: ArrayLike, key: ArrayLike, *, temperature: float) -> jax.Array:
    r"""MoCo v3's contrastive loss: cross-entropy over in-batch keys, scaled by ``2 T``.

    With ``q`` and ``k`` L2-normalised,

    .. math::
        \mathrm{ctr}(q, k) = \frac{2\tau}{N} \sum_{i=1}^{N}
            -\log \frac{\exp(q_i^\top k_i/\tau)}{\sum_{j=1}^{N} \exp(q_i^\top k_j/\tau)}

    (the authors' ``CrossEntropyLoss()(q @ k.T / T, arange(N)) * (2 * T)``; the ``2 T`` factor
    makes the gradient's scale independent of ``T``). Unlike :func:`~ssl_jax.losses.info_nce`
    with a queue, the negatives are the other ``N - 1`` keys of the same batch and the positive
    is on the diagonal. ``key`` should be wrapped in ``jax.lax.stop_gradient`` by the caller.

    Args:
      query: ``(N, D)`` base-encoder predictions.
      key: ``(N, D)`` momentum-encoder projections, ``key[i]`` the positive of ``query[i]``.
      temperature: :math:`\tau > 0` (1.0 for the authors' ResNet-50, 0.2 for ViT).

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> e = jnp.eye(2)
      >>> round(float(moco_v3_ctr(e, e, temperature=1.0)), 4)
      0.6265
    """
    query = jnp.asarray(query)
    key = jnp.asarray(key)
    if query.ndim != 2 or query.shape != key.shape:
        raise ValueError(
            f"moco_v3_ctr expects query and key of the same (N, D) shape, got {query.shape} "
            f"and {key.shape}."
        )
    if temperature <= 0:
        raise ValueError(f"moco_v3_ctr needs temperature > 0, got {temperature}.")
    dtype = jnp.promote_types(jnp.result_type(query, key), jnp.float32)
    q = l2_normalize(query.astype(dtype))
    k = l2_normalize(key.astype(dtype))
    logits = jnp.matmul(q, k.T, out_sharding=leading_axis_result(q))
    log_prob = jax.nn.log_softmax(logits / temperature, axis=-1)
    return -2.0 * temperature * jnp.mean(diagonal(log_prob))
