"""Online clustering losses: SwAV swapped prediction and Sinkhorn-Knopp equipartition codes."""

import math
import numbers

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ssl_jax.explicit_sharding import replicated_result


def _check_sinkhorn_args(fn: str, epsilon: float, num_iters: int) -> None:
    if isinstance(epsilon, numbers.Real) and epsilon <= 0:
        raise ValueError(f"{fn} needs epsilon > 0, got {epsilon}.")
    if not isinstance(num_iters, numbers.Integral) or num_iters < 1:
        raise ValueError(f"{fn} needs an integer num_iters >= 1, got {num_iters!r}.")


def sinkhorn_knopp(
    scores: ArrayLike,
    *,
    epsilon: float = 0.05,
    num_iters: int = 3,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""SwAV soft codes: equipartitioned assignment of B samples to K prototypes.

    Transcribes the authors' ``distributed_sinkhorn``. With :math:`Q = \exp(S/\varepsilon)^\top`
    (``K x B``) normalised to sum to 1, each of ``num_iters`` iterations scales the rows
    (prototypes) to sum to :math:`1/K` and then the columns (samples) to sum to :math:`1/B`;
    the result is :math:`B\,Q^\top`, so every row (sample) of the output is a distribution
    over prototypes and, once converged, every prototype receives :math:`B/K` samples in
    total (SwAV eq. 3, the entropic optimal transport with uniform marginals).

    The iteration runs in the log domain: each normalisation subtracts a log-sum-exp, which
    subtracts the maximum before exponentiating. This is the authors' loop exactly in exact
    arithmetic (a constant subtracted from the scores of one prototype, or from all of them,
    cancels in the normalisations), and it stays finite where the authors'
    ``exp(scores / epsilon)`` overflows float32 (``scores / epsilon > 88``).

    The codes are targets: the caller wraps them (or ``scores``) in
    ``jax.lax.stop_gradient``, as the authors compute them under ``torch.no_grad()``.
    Under a global-view ``jax.jit`` the sums over ``B`` span the global batch, which is what
    the authors' ``all_reduce`` calls compute.

    Args:
      scores: ``(B, K)`` prototype scores (dot products of L2-normalised embeddings with
        L2-normalised prototypes, so in ``[-1, 1]``) of the samples to assign.
      epsilon: :math:`\varepsilon > 0`, the entropic regularisation (paper: 0.05).
      num_iters: number of Sinkhorn iterations, at least 1 (paper: 3).
      where: optional ``(B,)`` bool; only the samples where it is ``True`` are assigned
        (``B`` is their count, traced), the others get all-zero codes: the Sinkhorn-Knopp of
        the selected rows alone, with static shapes. DINOv2 centres the teacher's outputs for
        the masked patches this way (``SinkhornKnoppTeacher`` over the ``n_masked_patches``).

    Returns:
      ``(B, K)`` codes, rows summing to 1; float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> scores = jnp.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
      >>> codes = sinkhorn_knopp(scores, epsilon=0.1)  # all prefer prototype 0, half get it
      >>> np.asarray(codes).round(2)
      array([[0.95, 0.05],
             [0.73, 0.27],
             [0.27, 0.73],
             [0.05, 0.95]], dtype=float32)

    References:
      Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments", NeurIPS 2020. https://arxiv.org/abs/2006.09882 ; code:
      https://github.com/facebookresearch/swav (``main_swav.py``, ``distributed_sinkhorn``).
      Cuturi, "Sinkhorn Distances", NeurIPS 2013. https://arxiv.org/abs/1306.0895
    """
    scores = jnp.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(
            f"sinkhorn_knopp expects (batch, prototypes) scores, got shape {scores.shape}."
        )
    _check_sinkhorn_args("sinkhorn_knopp", epsilon, num_iters)
    b, k = scores.shape
    log_b, log_k = math.log(b), math.log(k)
    # log Q, K x B. The authors' first division by sum(Q) cancels in the first row step; their
    # /K cancels in the column step that follows, kept so the loop reads like theirs.
    log_q = scores.astype(jnp.promote_types(scores.dtype, jnp.float32)).T / epsilon

    def iteration(_, log_q):
        log_q = log_q - jax.nn.logsumexp(log_q, axis=1, keepdims=True) - log_k
        return log_q - jax.nn.logsumexp(log_q, axis=0, keepdims=True) - log_b

    if where is not None:
        return _masked_sinkhorn(log_q, jnp.asarray(where), log_k, num_iters)
    log_q = jax.lax.fori_loop(0, num_iters, iteration, log_q)
    return jnp.exp(log_q + log_b).T


def _masked_sinkhorn(log_q: jax.Array, where: jax.Array, log_k: float, num_iters: int):
    """``sinkhorn_knopp``'s loop over the columns (samples) where ``where``; zeros elsewhere."""
    if where.shape != log_q.shape[1:] or where.dtype != jnp.bool_:
        raise ValueError(
            f"sinkhorn_knopp's where must be a bool array of shape ({log_q.shape[1]},), one "
            f"flag per sample; got {where.dtype} of shape {where.shape}."
        )
    valid = where[None, :]
    log_b = jnp.log(jnp.maximum(jnp.sum(where), 1).astype(log_q.dtype))
    log_q = jnp.where(valid, log_q, -jnp.inf)

    def iteration(_, log_q):
        rows = jax.nn.logsumexp(log_q, axis=1, keepdims=True)
        log_q = jnp.where(valid, log_q - rows - log_k, -jnp.inf)
        cols = jax.nn.logsumexp(log_q, axis=0, keepdims=True)
        return jnp.where(valid, log_q - cols - log_b, -jnp.inf)

    log_q = jax.lax.fori_loop(0, num_iters, iteration, log_q)
    return jnp.where(valid, jnp.exp(log_q + log_b), 0.0).T


def swav_codes(
    scores_for_assign: ArrayLike,
    *,
    queue_scores: ArrayLike | None = None,
    epsilon: float = 0.05,
    num_iters: int = 3,
) -> jax.Array:
    r"""Sinkhorn codes of each crop used for assignment, optionally with a queue.

    For each assigned crop ``a`` the codes are :func:`sinkhorn_knopp` of its ``N`` scores.
    With a queue, Sinkhorn runs on the ``Qn`` queued scores followed by the ``N`` batch
    scores, and only the last ``N`` rows (the batch) are kept, so that small batches are
    still spread evenly over the prototypes (the authors'
    ``out = torch.cat((torch.mm(queue[i], prototypes.weight.t()), out))`` then
    ``distributed_sinkhorn(out)[-bs:]``).

    The queue holds embeddings of earlier batches; its scores are computed with the current
    prototypes (``queue_embeddings @ prototypes.T``). The authors only use the queue once it
    is full; that choice, and wrapping the codes in ``jax.lax.stop_gradient``, is the
    caller's.

    Args:
      scores_for_assign: ``(A, N, K)`` prototype scores of the ``A`` crops used for
        assignment (usually the two global crops).
      queue_scores: optional ``(A, Qn, K)`` prototype scores of the queued embeddings of
        the same crops.
      epsilon: :math:`\varepsilon > 0` of :func:`sinkhorn_knopp`.
      num_iters: Sinkhorn iterations, at least 1.

    Returns:
      ``(A, N, K)`` codes for :func:`swav_loss`; float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> scores = jnp.array([[[0.9, 0.1], [0.8, 0.2]]])  # one crop, batch 2, 2 prototypes
      >>> np.asarray(swav_codes(scores, epsilon=0.1)).round(2)
      array([[[0.73, 0.27],
              [0.27, 0.73]]], dtype=float32)
      >>> queue = jnp.array([[[0.1, 0.9], [0.2, 0.8]]])  # the queue fills prototype 1
      >>> np.asarray(swav_codes(scores, queue_scores=queue, epsilon=0.1)).round(2)
      array([[[1., 0.],
              [1., 0.]]], dtype=float32)

    References:
      Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments", NeurIPS 2020, sec. 3.1 and 4 ("small batches").
      https://arxiv.org/abs/2006.09882
    """
    scores = jnp.asarray(scores_for_assign)
    if scores.ndim != 3:
        raise ValueError(
            "swav_codes expects scores_for_assign of shape (crops, batch, prototypes), "
            f"got {scores.shape}."
        )
    _check_sinkhorn_args("swav_codes", epsilon, num_iters)
    n = scores.shape[1]
    if queue_scores is not None:
        queue = jnp.asarray(queue_scores)
        if (
            queue.ndim != 3
            or queue.shape[0] != scores.shape[0]
            or queue.shape[2] != scores.shape[2]
        ):
            raise ValueError(
                "swav_codes expects queue_scores of shape (crops, queue length, prototypes) "
                f"with the crops and prototypes of scores_for_assign {scores.shape}, "
                f"got {queue.shape}."
            )
        scores = jnp.concatenate([queue, scores], axis=1)
    sinkhorn = lambda s: sinkhorn_knopp(s, epsilon=epsilon, num_iters=num_iters)
    return jax.vmap(sinkhorn)(scores)[:, scores.shape[1] - n :]


def swav_loss(scores: ArrayLike, codes: ArrayLike, *, temperature: float = 0.1) -> jax.Array:
    r"""SwAV swapped prediction: predict each assigned crop's codes from every other crop.

    The first ``A`` of the ``V`` crops are the crops used for assignment (the authors'
    ``crops_for_assign``, by default the two global crops) and ``codes[a]`` are their
    Sinkhorn codes (:func:`swav_codes`). With
    :math:`\log p_v = \operatorname{log\,softmax}(z_v^\top C / \tau)`,

    .. math::
        L = \frac{1}{A} \sum_{a=1}^{A} \frac{1}{V - 1} \sum_{v \ne a}
            \frac{1}{N} \sum_{n=1}^{N} \sum_{k=1}^{K} -q_{a,n,k} \log p_{v,n,k}

    (SwAV eq. 1 and 2 with multi-crop; the authors' loop adds each ``subloss / (V - 1)`` and
    divides by ``len(crops_for_assign)``).

    Gradients flow to both inputs: the caller must wrap ``codes`` in
    ``jax.lax.stop_gradient``.

    Args:
      scores: ``(V, N, K)`` prototype scores of all crops, the ``A`` assigned crops first.
      codes: ``(A, N, K)`` codes of the assigned crops, ``1 <= A <= V``.
      temperature: :math:`\tau > 0` (paper: 0.1).

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> scores = jnp.zeros((4, 2, 8))  # 2 + 2 crops, batch 2, 8 prototypes
      >>> codes = jnp.full((2, 2, 8), 1 / 8)
      >>> round(float(swav_loss(scores, codes)), 4)  # log 8
      2.0794

    References:
      Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
      Assignments", NeurIPS 2020. https://arxiv.org/abs/2006.09882 ; code:
      https://github.com/facebookresearch/swav (``main_swav.py``, ``train``).
    """
    scores = jnp.asarray(scores)
    codes = jnp.asarray(codes)
    if scores.ndim != 3 or codes.ndim != 3:
        raise ValueError(
            "swav_loss expects scores (crops, batch, prototypes) and codes "
            f"(assigned crops, batch, prototypes), got shapes {scores.shape} and {codes.shape}."
        )
    num_views, n, _ = scores.shape
    num_assign = codes.shape[0]
    if codes.shape[1:] != scores.shape[1:]:
        raise ValueError(
            "swav_loss expects scores and codes with the same (batch, prototypes), "
            f"got {scores.shape} and {codes.shape}."
        )
    if not 1 <= num_assign <= num_views or num_views < 2:
        raise ValueError(
            "swav_loss needs 1 <= A <= V assigned crops and V >= 2 crops (the first A crops "
            f"are the assigned ones), got A={num_assign}, V={num_views}."
        )
    if isinstance(temperature, numbers.Real) and temperature <= 0:
        raise ValueError(f"swav_loss needs temperature > 0, got {temperature}.")

    dtype = jnp.promote_types(jnp.result_type(scores, codes), jnp.float32)
    log_p = jax.nn.log_softmax(scores.astype(dtype) / temperature, axis=-1)
    # Batch-mean cross-entropy of every (assigned crop a, predicting crop v) pair, (A, V).
    codes = codes.astype(dtype)
    cross_entropy = -jnp.einsum(
        "ank,vnk->av",
        codes,
        log_p,
        precision=jax.lax.Precision.HIGHEST,
        out_sharding=replicated_result(codes, log_p),
    )
    cross_entropy = cross_entropy / n
    same_crop = jnp.eye(num_assign, num_views, dtype=bool)
    total = jnp.sum(jnp.where(same_crop, 0.0, cross_entropy))
    return total / (num_assign * (num_views - 1))
