"""Reconstruction losses for masked-image pretext tasks (MAE, Context Encoders, SimMIM)."""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def masked_mse(
    pred: ArrayLike, target: ArrayLike, mask: ArrayLike, *, weights: ArrayLike | None = None
) -> jax.Array:
    r"""Mean squared error over the masked elements only, MAE's reconstruction loss.

    The ``mask`` has the leading axes of ``pred`` and ``target``; the remaining (trailing) axes
    are the values of one element (a patch's ``p * p * C`` pixels, or a pixel's ``C``
    channels). The squared error is averaged over those values, then over the masked elements:

    .. math::
        e_i = \frac{1}{D} \sum_{d} (\hat y_{i,d} - y_{i,d})^2, \qquad
        \mathcal{L} = \frac{\sum_i w_i\, m_i\, e_i}{\sum_i m_i}

    with ``i`` running over the mask's axes, ``m`` the mask and ``w = weights`` (1 by default).
    Without weights this is MAE's ``forward_loss``: ``loss.mean(dim=-1)`` per patch, then
    ``(loss * mask).sum() / mask.sum()``, for ``(N, L, D)`` patches and an ``(N, L)`` mask
    (1 = removed, :func:`ssl_jax.pretext.patches.random_masking`). With ``(N, H, W, C)`` images
    and an ``(N, H, W)`` mask it is Context Encoders' L2 reconstruction loss over the removed
    region (:mod:`ssl_jax.pretext.masks`).

    ``weights`` reweights elements without renormalising (the denominator stays
    :math:`\sum_i m_i`), as Pathak et al.'s code multiplies the MSE gradient by a weight map.
    Their central-block model predicts a block that overlaps the context by a few pixels
    (7 in the paper, 4 in their released commands) and weighs the reconstruction error there
    10x: ``mask`` = the predicted block, ``weights = where(hole, 1, 10)``. The total loss is
    then ``0.999 * masked_mse + 0.001 * adversarial``; the adversarial term is not part of
    this library. An all-zero mask gives 0 (MAE's code would divide by zero).

    Args:
      pred: ``(*M, *E)`` predictions, e.g. ``(N, L, D)`` or ``(N, H, W, C)``.
      target: same shape as ``pred``; wrap in ``jax.lax.stop_gradient`` if it is computed.
      mask: ``M``-shaped, bool or 0/1 float, ``True`` / 1 where the loss counts.
      weights: optional per-element weights broadcastable to the mask's shape.

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> pred, target = jnp.ones((1, 2, 3)), jnp.zeros((1, 2, 3))
      >>> float(masked_mse(pred, target, jnp.array([[True, False]])))
      1.0

    References:
      He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022.
      https://arxiv.org/abs/2111.06377

      Pathak et al., "Context Encoders: Feature Learning by Inpainting", CVPR 2016.
      https://arxiv.org/abs/1604.07379
    """
    pred, target, mask = jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask)
    if pred.shape != target.shape:
        raise ValueError(
            f"masked_mse expects pred and target of the same shape, got {pred.shape} and "
            f"{target.shape}."
        )
    if mask.ndim > pred.ndim or mask.shape != pred.shape[: mask.ndim]:
        raise ValueError(
            f"masked_mse expects a mask over the leading axes of pred, e.g. (N, L) for "
            f"(N, L, D) patches or (N, H, W) for (N, H, W, C) images; got mask {mask.shape} "
            f"for pred {pred.shape}."
        )
    dtype = jnp.promote_types(jnp.result_type(pred, target), jnp.float32)
    per_element = jnp.mean(
        jnp.square(pred.astype(dtype) - target.astype(dtype)),
        axis=tuple(range(mask.ndim, pred.ndim)),
    )
    mask = mask.astype(dtype)
    numerator = per_element * mask
    if weights is not None:
        weights = jnp.asarray(weights)
        try:
            broadcast = jnp.broadcast_shapes(weights.shape, mask.shape)
        except ValueError:
            broadcast = None
        if broadcast != mask.shape:
            raise ValueError(
                f"masked_mse expects weights broadcastable to the mask's shape {mask.shape}; "
                f"got {weights.shape}."
            )
        numerator = numerator * weights.astype(dtype)
    count = jnp.sum(mask)
    nonempty = count > 0
    return jnp.where(nonempty, jnp.sum(numerator) / jnp.where(nonempty, count, 1.0), 0.0)


def masked_l1(pred: ArrayLike, target: ArrayLike, mask: ArrayLike) -> jax.Array:
    r"""Mean absolute error over the masked elements only, SimMIM's reconstruction loss.

    As :func:`masked_mse` with the absolute error: for ``(N, L, D)`` patches and an ``(N, L)``
    mask,

    .. math::
        \mathcal{L} = \frac{\sum_{i} m_i \frac1D \sum_d |\hat y_{i,d} - y_{i,d}|}{\sum_i m_i}

    which is the authors' pixel form ``(l1(x, x_rec) * mask).sum() / (mask.sum() + 1e-5) /
    in_chans`` with the mask upsampled to pixels (every patch has the same ``D`` values; the
    1e-5 is left out, an all-zero mask gives 0).

    Args:
      pred: ``(*M, *E)`` predictions, e.g. ``(N, L, D)`` patches.
      target: same shape as ``pred``.
      mask: ``M``-shaped, bool or 0/1 float, ``True`` / 1 where the loss counts.

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> pred, target = jnp.full((1, 2, 3), 2.0), jnp.zeros((1, 2, 3))
      >>> float(masked_l1(pred, target, jnp.array([[True, False]])))
      2.0

    References:
      Xie et al., "SimMIM: A Simple Framework for Masked Image Modeling", CVPR 2022.
      https://arxiv.org/abs/2111.09886
    """
    pred, target, mask = jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask)
    if pred.shape != target.shape:
        raise ValueError(
            f"masked_l1 expects pred and target of the same shape, got {pred.shape} and "
            f"{target.shape}."
        )
    if mask.ndim > pred.ndim or mask.shape != pred.shape[: mask.ndim]:
        raise ValueError(
            f"masked_l1 expects a mask over the leading axes of pred, e.g. (N, L) for (N, L, D) "
            f"patches; got mask {mask.shape} for pred {pred.shape}."
        )
    dtype = jnp.promote_types(jnp.result_type(pred, target), jnp.float32)
    per_element = jnp.mean(
        jnp.abs(pred.astype(dtype) - target.astype(dtype)),
        axis=tuple(range(mask.ndim, pred.ndim)),
    )
    mask = mask.astype(dtype)
    count = jnp.sum(mask)
    nonempty = count > 0
    return jnp.where(nonempty, jnp.sum(per_element * mask) / jnp.where(nonempty, count, 1.0), 0.0)
