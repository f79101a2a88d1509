"""Contrastive losses: one InfoNCE cross-entropy, and its paper-named forms.

:func:`contrastive_loss` is the family: each anchor scores its positive against a set of
negatives (the other keys of the batch, the other anchors, a bank such as MoCo's queue) with
temperature-scaled cosine similarities. :func:`nt_xent` (SimCLR), :func:`info_nce` (MoCo) and
:func:`moco_v3_ctr` (MoCo v3) are that function with their paper's options; NNCLR's loss is
it with the nearest neighbours of a support set passed as the anchors; :func:`dcl_loss` and
:func:`dclw_loss` (decoupled contrastive learning) are NT-Xent without the positive in the
denominator.
"""

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


def _check_temperature(name: str, temperature: float) -> None:
    if temperature <= 0:
        raise ValueError(f"{name} needs temperature > 0, got {temperature}.")


def contrastive_loss(
    anchors: ArrayLike,
    positives: ArrayLike,
    negatives: ArrayLike | None = None,
    *,
    temperature: float,
    in_batch_negatives: bool = True,
    symmetric: bool = False,
    scale: float = 1.0,
    decoupled: bool = False,
    positive_weights: ArrayLike | None = None,
) -> jax.Array:
    r"""InfoNCE: the cross-entropy of each anchor's positive among its candidates.

    With every vector L2-normalised, ``anchors[i]`` (:math:`a_i`) has the positive
    ``positives[i]`` (:math:`p_i`) and a set :math:`\mathcal{N}_i` of negatives:

    .. math::
        \ell_i = -\log \frac{\exp(a_i^\top p_i/\tau)}
                            {\exp(a_i^\top p_i/\tau) + \sum_{n \in \mathcal{N}_i}
                             \exp(a_i^\top n/\tau)},
        \qquad \mathcal{L} = \frac{\text{scale}}{|I|} \sum_{i \in I} \ell_i

    (van den Oord et al. 2018, eq. 4). The options choose the anchors :math:`I` and
    :math:`\mathcal{N}_i`:

    - ``in_batch_negatives=True``: the other positives :math:`p_j, j \ne i` are negatives
      (MoCo v3, NNCLR); ``False``: only the bank is (MoCo).
    - ``negatives``: a ``(K, D)`` bank shared by every anchor (MoCo's queue), added to
      :math:`\mathcal{N}_i`.
    - ``symmetric=True``: the positives are anchors too (:math:`p_i`'s positive is
      :math:`a_i`), so there are 2N anchors; with ``in_batch_negatives`` each one's
      negatives are the other 2N - 2 embeddings of both arrays (SimCLR's NT-Xent),
      without it only the bank.
    - ``scale``: a factor on the mean (MoCo v3's :math:`2\tau`).
    - ``decoupled=True``: the positive leaves the denominator (Yeh et al. 2022, DCL eq. 6),
      :math:`\ell_i = -w_i\, a_i^\top p_i/\tau + \log \sum_{n \in \mathcal{N}_i}
      \exp(a_i^\top n/\tau)`, with :math:`w_i = 1` or ``positive_weights[i]`` (DCLW's
      weighting: :func:`dclw_loss`); with ``symmetric`` the positives' rows take the same
      weights.

    Computed with a log-softmax, so a small ``temperature`` is stable. Gradients reach every
    input: a method that trains only the anchors' encoder wraps the others in
    ``jax.lax.stop_gradient``. Under a global-view ``jax.jit`` the batch axis already spans
    every device, so in-batch negatives come from the global batch without a collective.

    Args:
      anchors: ``(N, D)`` anchor embeddings (queries).
      positives: ``(N, D)``, ``positives[i]`` the positive of ``anchors[i]`` (keys).
      negatives: optional ``(K, D)`` bank of negatives.
      temperature: :math:`\tau > 0`.
      in_batch_negatives: whether the batch's other embeddings are negatives.
      symmetric: whether the positives are anchors too.
      scale: a Python float multiplying the mean.
      decoupled: whether the positive is left out of the denominator (DCL).
      positive_weights: optional ``(N,)`` weights of the positive terms; needs ``decoupled``.

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Raises:
      ValueError: on mismatched shapes, ``temperature <= 0``, or no negatives at all
        (``in_batch_negatives=False`` without a bank), or ``positive_weights`` of another
        shape than ``(N,)`` or without ``decoupled``.

    Examples:
      >>> import jax.numpy as jnp
      >>> e = jnp.eye(4)
      >>> round(float(contrastive_loss(e[:2], e[:2], e[2:], temperature=1.0)), 4)
      0.7437

    References:
      van den Oord, Li, Vinyals, "Representation Learning with Contrastive Predictive
      Coding", 2018. https://arxiv.org/abs/1807.03748
    """
    anchors = jnp.asarray(anchors)
    positives = jnp.asarray(positives)
    arrays = (anchors, positives)
    if negatives is not None:
        negatives = jnp.asarray(negatives)
        arrays += (negatives,)
    if anchors.ndim != 2 or anchors.shape != positives.shape:
        raise ValueError(
            "contrastive_loss expects anchors and positives of the same (N, D) shape (one "
            f"positive per anchor), got {anchors.shape} and {positives.shape}."
        )
    if negatives is not None and (negatives.ndim != 2 or negatives.shape[1] != anchors.shape[1]):
        raise ValueError(
            f"contrastive_loss expects a (K, D) bank of negatives with the anchors' D="
            f"{anchors.shape[1]}, got negatives of shape {negatives.shape}."
        )
    if not in_batch_negatives and negatives is None:
        raise ValueError(
            "contrastive_loss with in_batch_negatives=False needs a bank of negatives: pass "
            "negatives=(K, D) or set in_batch_negatives=True."
        )
    _check_temperature("contrastive_loss", temperature)
    n = anchors.shape[0]
    if positive_weights is not None:
        positive_weights = jnp.asarray(positive_weights)
        if not decoupled or positive_weights.shape != (n,):
            raise ValueError(
                f"contrastive_loss takes positive_weights of shape (N,)=({n},) with "
                f"decoupled=True (DCLW), got shape {positive_weights.shape} and "
                f"decoupled={decoupled}."
            )
    dtype = jnp.promote_types(jnp.result_type(*arrays), jnp.float32)
    bank = None if negatives is None else l2_normalize(negatives.astype(dtype))
    if in_batch_negatives and symmetric:
        z = l2_normalize(jnp.concatenate([anchors, positives], axis=0).astype(dtype))
        logits = jnp.matmul(z, z.T, out_sharding=leading_axis_result(z)) / temperature
        logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
        if bank is not None:
            logits = jnp.concatenate([logits, (z @ bank.T) / temperature], axis=-1)
        positive = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    elif in_batch_negatives:
        q = l2_normalize(anchors.astype(dtype))
        k = l2_normalize(positives.astype(dtype))
        logits = jnp.matmul(q, k.T, out_sharding=leading_axis_result(q))
        if bank is not None:
            logits = jnp.concatenate([logits, q @ bank.T], axis=-1)
        logits = logits / temperature
        positive = None  # the diagonal
    else:
        if symmetric:
            anchors, positives = (
                jnp.concatenate([anchors, positives], axis=0),
                jnp.concatenate([positives, anchors], axis=0),
            )
        q = l2_normalize(anchors.astype(dtype))
        k = l2_normalize(positives.astype(dtype))
        logits = jnp.concatenate([jnp.sum(q * k, axis=-1, keepdims=True), q @ bank.T], axis=-1)
        logits = logits / temperature
        positive = jnp.zeros(logits.shape[0], dtype=int)
    if positive is None:
        pick = lambda m: diagonal(m)
    else:
        pick = lambda m: jnp.take_along_axis(m, positive[:, None], axis=-1)[:, 0]
    if not decoupled:
        per_anchor = -pick(jax.nn.log_softmax(logits, axis=-1))
    else:
        columns = jnp.arange(logits.shape[1])
        rows = jnp.arange(logits.shape[0]) if positive is None else positive
        is_positive = rows[:, None] == columns[None, :]
        positive_logit = pick(logits)
        if positive_weights is not None:
            weights = positive_weights.astype(dtype)
            if logits.shape[0] == 2 * n:  # symmetric: the positives' rows follow
                weights = jnp.concatenate([weights, weights])
            positive_logit = weights * positive_logit
        negative_lse = jax.nn.logsumexp(jnp.where(is_positive, -jnp.inf, logits), axis=-1)
        per_anchor = negative_lse - positive_logit
    if scale == 1.0:
        return jnp.mean(per_anchor)
    return scale * jnp.mean(per_anchor)


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
    Algorithm 1): :func:`contrastive_loss` ``(z1, z2, symmetric=True)``.

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
    _check_temperature("nt_xent", temperature)
    return contrastive_loss(z1, z2, temperature=temperature, symmetric=True)


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
    Algorithm 1: logits ``[l_pos, l_neg] / T``, cross-entropy with label 0):
    :func:`contrastive_loss` ``(query, key, negatives, in_batch_negatives=False)``.

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
    _check_temperature("info_nce", temperature)
    return contrastive_loss(
        query, key, negatives, temperature=temperature, in_batch_negatives=False
    )


def moco_v3_ctr(query: ArrayLike, key: ArrayLike, *, temperature: float) -> jax.Array:
    r"""MoCo v3's contrastive loss: cross-entropy over in-batch keys, scaled by ``2 T``.

    With ``q`` and ``k`` L2-normalised,

    .. math::
        \mathrm{ctr}(q, k) = \frac{2\tau}{N} \sum_{i=1}^{N}
            -\log \frac{\exp(q_i^\top k_i/\tau)}{\sum_{j=1}^{N} \exp(q_i^\top k_j/\tau)}

    (the authors' ``CrossEntropyLoss()(q @ k.T / T, arange(N)) * (2 * T)``; the ``2 T`` factor
    makes the gradient's scale independent of ``T``): :func:`contrastive_loss` ``(query, key,
    scale=2 T)``. Unlike :func:`info_nce` with a queue, the negatives are the other ``N - 1``
    keys of the same batch and the positive is on the diagonal. ``key`` should be wrapped in
    ``jax.lax.stop_gradient`` by the caller.

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

    References:
      Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision Transformers",
      ICCV 2021. https://arxiv.org/abs/2104.02057
    """
    query = jnp.asarray(query)
    key = jnp.asarray(key)
    if query.ndim != 2 or query.shape != key.shape:
        raise ValueError(
            f"moco_v3_ctr expects query and key of the same (N, D) shape, got {query.shape} "
            f"and {key.shape}."
        )
    _check_temperature("moco_v3_ctr", temperature)
    return contrastive_loss(query, key, temperature=temperature, scale=2.0 * temperature)


def dcl_loss(z1: ArrayLike, z2: ArrayLike, *, temperature: float = 0.1) -> jax.Array:
    r"""Decoupled contrastive loss (DCL): NT-Xent with the positive out of the denominator.

    With every embedding L2-normalised and :math:`\mathcal{N}_i` the other 2N - 2
    embeddings of both views (SimCLR's negatives),

    .. math::
        \ell_i = -\frac{z_i^\top z_i^+}{\tau}
                  + \log \sum_{n \in \mathcal{N}_i} \exp(z_i^\top n / \tau)

    and the loss is the mean of :math:`\ell` over all 2N anchors (Yeh et al. 2022, eq. 6;
    the authors' ``DCL`` class computes one direction, their example sums
    ``loss(z1, z2) + loss(z2, z1)``, twice this mean). Removing the positive from the
    denominator removes the negative-positive coupling factor of InfoNCE's gradient, which
    makes small batches work: :func:`contrastive_loss` ``(z1, z2, symmetric=True,
    decoupled=True)``.

    Args:
      z1: ``(N, D)`` projections of the first views.
      z2: ``(N, D)`` projections of the second views.
      temperature: :math:`\tau > 0` (0.1 in the authors' code).

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.eye(2)
      >>> round(float(dcl_loss(z, z, temperature=1.0)), 4)
      -0.3069

    References:
      Yeh et al., "Decoupled Contrastive Learning", ECCV 2022.
      https://arxiv.org/abs/2110.06848
    """
    z1 = jnp.asarray(z1)
    z2 = jnp.asarray(z2)
    _check_pair("dcl_loss", z1, z2)
    _check_temperature("dcl_loss", temperature)
    return contrastive_loss(z1, z2, temperature=temperature, symmetric=True, decoupled=True)


def dclw_weights(z1: ArrayLike, z2: ArrayLike, *, sigma: float = 0.5) -> jax.Array:
    r"""DCLW's negative von Mises-Fisher weights of the positive pairs, ``(N,)``.

    .. math::
        w_i = 2 - \frac{\exp(z_i^\top z_i^+ / \sigma)}
                       {\frac1N \sum_j \exp(z_j^\top z_j^+ / \sigma)}

    of L2-normalised embeddings (Yeh et al. 2022, eq. 8; the authors' ``2 - N
    softmax(sum(z1 * z2) / sigma)``): easy positives (high similarity) weigh less, the mean
    weight is 1. Gradients flow through the weights, as in the authors' code.
    """
    if sigma <= 0:
        raise ValueError(f"dclw_weights needs sigma > 0, got {sigma}.")
    z1 = l2_normalize(jnp.asarray(z1))
    z2 = l2_normalize(jnp.asarray(z2))
    similarity = jnp.sum(z1 * z2, axis=-1) / sigma
    return 2.0 - z1.shape[0] * jax.nn.softmax(similarity)


def dclw_loss(
    z1: ArrayLike, z2: ArrayLike, *, temperature: float = 0.1, sigma: float = 0.5
) -> jax.Array:
    r"""Weighted decoupled contrastive loss (DCLW): :func:`dcl_loss` with the positive term
    of anchor pair :math:`i` weighted by :func:`dclw_weights` :math:`w_i`,

    .. math::
        \ell_i = -w_i \frac{z_i^\top z_i^+}{\tau}
                  + \log \sum_{n \in \mathcal{N}_i} \exp(z_i^\top n / \tau)

    (Yeh et al. 2022, eq. 7-8), both directions of a pair with the same weight (it is
    symmetric in the two views), mean over the 2N anchors.

    Args:
      z1: ``(N, D)`` projections of the first views.
      z2: ``(N, D)`` projections of the second views.
      temperature: :math:`\tau > 0`.
      sigma: :math:`\sigma > 0` of the von Mises-Fisher weighting (0.5 in the paper).

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.eye(2)
      >>> round(float(dclw_loss(z, z, temperature=1.0)), 4)
      -0.3069

    References:
      Yeh et al., "Decoupled Contrastive Learning", ECCV 2022.
      https://arxiv.org/abs/2110.06848
    """
    z1 = jnp.asarray(z1)
    z2 = jnp.asarray(z2)
    _check_pair("dclw_loss", z1, z2)
    _check_temperature("dclw_loss", temperature)
    weights = dclw_weights(z1, z2, sigma=sigma)
    return contrastive_loss(
        z1, z2, temperature=temperature, symmetric=True, decoupled=True, positive_weights=weights
    )
