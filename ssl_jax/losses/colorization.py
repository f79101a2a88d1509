"""Colorization losses (Zhang, Isola and Efros 2016): per-pixel ab classification and regression.

Targets and class weights come from :mod:`ssl_jax.pretext.colorization`.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ssl_jax.explicit_sharding import take


def _pixel_mask(where: ArrayLike | None, shape: tuple[int, ...], name: str) -> jax.Array | None:
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.shape != shape:
        raise ValueError(
            f"{name} expects where of the per-pixel shape {shape} (the inputs without their last "
            f"axis); got {where.shape}."
        )
    return where.astype(bool)


def _masked_mean(per_pixel: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.mean(per_pixel)
    total = jnp.sum(jnp.where(mask, per_pixel, 0.0))
    return total / jnp.maximum(jnp.sum(mask), 1).astype(per_pixel.dtype)


def rebalanced_cross_entropy(
    logits: ArrayLike,
    soft_targets: ArrayLike,
    weights: ArrayLike,
    *,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Class-rebalanced multinomial cross entropy over ab bins, the Zhang et al. colorization loss.

    With :math:`\hat Z = \mathrm{softmax}(\text{logits})` over the Q bins, the soft-encoded target
    Z and the class weights w,

    .. math::
        L(\hat Z, Z) = -\frac{1}{M} \sum_{h,w} v(Z_{h,w}) \sum_q Z_{h,w,q} \log \hat Z_{h,w,q},
        \qquad v(Z_{h,w}) = w_{q^*}, \; q^* = \arg\max_q Z_{h,w,q}

    (eqs. 2 and 3). The paper sums over pixels; this averages over the M pixels (of all images,
    or those where ``where`` is True) so the scale does not depend on the image size or batch.
    The log-softmax is computed from the logits, so it is stable for any logit scale. Gradients
    flow to the logits only in practice: ``q*`` is an argmax and the targets are data.

    Args:
      logits: ``(N, H, W, Q)`` unnormalised class scores.
      soft_targets: ``(N, H, W, Q)`` target distributions Z, such as
        :func:`ssl_jax.pretext.colorization.soft_encode_ab`.
      weights: ``(Q,)`` class weights w, such as
        :func:`ssl_jax.pretext.colorization.rebalance_weights` (all ones: no rebalancing).
      where: optional boolean ``(N, H, W)`` mask of the pixels to include.

    Returns:
      Scalar loss, float32 (float64 for float64 inputs); 0 if ``where`` keeps no pixel.

    Examples:
      >>> import jax.numpy as jnp
      >>> logits = jnp.log(jnp.array([[[[0.5, 0.25, 0.25]]]]))
      >>> targets = jnp.array([[[[1.0, 0.0, 0.0]]]])
      >>> round(float(rebalanced_cross_entropy(logits, targets, jnp.array([2.0, 1.0, 1.0]))), 4)
      1.3863

    References:
      Zhang, Isola and Efros, "Colorful Image Colorization", ECCV 2016.
      https://arxiv.org/abs/1603.08511
    """
    logits = jnp.asarray(logits)
    soft_targets = jnp.asarray(soft_targets)
    weights = jnp.asarray(weights)
    if logits.ndim < 2 or logits.shape != soft_targets.shape:
        raise ValueError(
            "rebalanced_cross_entropy expects logits and soft_targets of the same (N, H, W, Q) "
            f"shape, got {logits.shape} and {soft_targets.shape}."
        )
    if weights.shape != logits.shape[-1:]:
        raise ValueError(
            f"rebalanced_cross_entropy expects one weight per bin, shape ({logits.shape[-1]},), "
            f"got weights of shape {weights.shape}."
        )
    mask = _pixel_mask(where, logits.shape[:-1], "rebalanced_cross_entropy")
    dtype = jnp.promote_types(jnp.result_type(logits, soft_targets, weights), jnp.float32)
    log_probs = jax.nn.log_softmax(logits.astype(dtype), axis=-1)
    soft_targets = soft_targets.astype(dtype)
    bins = jnp.argmax(soft_targets, axis=-1)
    pixel_weight = take(weights.astype(dtype), bins)
    cross_entropy = -jnp.sum(soft_targets * log_probs, axis=-1)
    return _masked_mean(pixel_weight * cross_entropy, mask)


def ab_regression_loss(
    pred_ab: ArrayLike, target_ab: ArrayLike, *, where: ArrayLike | None = None
) -> jax.Array:
    r"""Euclidean loss on ab, the regression baseline of Zhang et al. (eq. 1), averaged per pixel.

    .. math::
        L_2(\hat Y, Y) = \frac{1}{M} \sum_{h,w} \tfrac12 \lVert Y_{h,w} - \hat Y_{h,w} \rVert_2^2

    over the M pixels (all, or those where ``where`` is True); the paper sums over pixels. With
    two channels this equals the mean squared error over all ab entries. The paper argues this
    loss gives desaturated colours (it is minimised by the mean of a multimodal distribution),
    which is why it classifies instead.

    Args:
      pred_ab: ``(N, H, W, 2)`` predicted ab.
      target_ab: ``(N, H, W, 2)`` target ab.
      where: optional boolean ``(N, H, W)`` mask of the pixels to include.

    Returns:
      Scalar loss, float32 (float64 for float64 inputs); 0 if ``where`` keeps no pixel.

    Examples:
      >>> import jax.numpy as jnp
      >>> float(ab_regression_loss(jnp.zeros((1, 1, 2, 2)), jnp.array([[[[2.0, 0.0], [0, 0]]]])))
      1.0
    """
    pred_ab = jnp.asarray(pred_ab)
    target_ab = jnp.asarray(target_ab)
    if pred_ab.ndim < 2 or pred_ab.shape[-1] != 2 or pred_ab.shape != target_ab.shape:
        raise ValueError(
            "ab_regression_loss expects pred_ab and target_ab of the same (N, H, W, 2) shape, got "
            f"{pred_ab.shape} and {target_ab.shape}."
        )
    mask = _pixel_mask(where, pred_ab.shape[:-1], "ab_regression_loss")
    dtype = jnp.promote_types(jnp.result_type(pred_ab, target_ab), jnp.float32)
    diff = pred_ab.astype(dtype) - target_ab.astype(dtype)
    return _masked_mean(0.5 * jnp.sum(jnp.square(diff), axis=-1), mask)
