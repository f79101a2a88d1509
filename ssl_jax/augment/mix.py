"""Soft targets, Mixup and CutMix: pure, jittable functions of a batch and one key.

- Label smoothing (Szegedy et al., 2016): ``t = (1 - eps) * one_hot(y) + eps / K``.
- Mixup (Zhang et al., 2018, https://arxiv.org/abs/1710.09412): ``x~ = lam x_i + (1 - lam) x_j``,
  ``t~ = lam t_i + (1 - lam) t_j``, ``lam ~ Beta(alpha, alpha)``.
- CutMix (Yun et al., 2019, https://arxiv.org/abs/1905.04899): a box of side
  ``floor(sqrt(1 - lam) * side)`` around a uniformly drawn centre, clipped at the border, is
  pasted from ``x_j`` into ``x_i``; ``t~ = lam' t_i + (1 - lam') t_j`` with ``lam' = 1 -
  area(clipped box) / (H W)``, the fraction of ``x_i`` actually kept.

As timm's ``Mixup`` in its default ``"batch"`` mode (DeiT's and MAE's fine-tuning recipes): one
``lam`` (and one box) per batch, example ``i`` paired with example ``N - 1 - i`` (the batch
reversed), smoothing applied to the one-hot targets before mixing, and with both alphas > 0
CutMix chosen for a batch with probability ``switch_prob``, Mixup otherwise. Images are any
floating NHWC batch (before or after normalisation: mixing commutes with a per-channel
affine map because the weights sum to 1).
"""

import jax
import jax.numpy as jnp

__all__ = ["cutmix", "cutmix_box_mask", "mix_batch", "mixup", "one_hot_targets"]


def _check_alpha(alpha: float, name: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha >= 0:
        raise ValueError(f"{name} must be a number >= 0 (0 turns it off); got {alpha!r}.")
    return float(alpha)


def _check_pair(images: jax.typing.ArrayLike, targets: jax.typing.ArrayLike):
    images, targets = jnp.asarray(images), jnp.asarray(targets)
    if images.ndim != 4 or not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"images must be a floating NHWC batch (N, H, W, C); got {images.dtype} {images.shape}."
        )
    if targets.ndim != 2 or targets.shape[0] != images.shape[0]:
        raise ValueError(
            f"targets must be (N, num_classes) soft labels with N = {images.shape[0]} (the "
            f"images' batch); got shape {targets.shape}. Make them with one_hot_targets."
        )
    return images, targets


def one_hot_targets(
    labels: jax.typing.ArrayLike, num_classes: int, *, label_smoothing: float = 0.0
) -> jax.Array:
    """Integer labels ``(N,)`` -> float32 targets ``(N, num_classes)``:
    ``(1 - label_smoothing) * one_hot + label_smoothing / num_classes`` (each row sums to 1).

    Examples:
      >>> import jax.numpy as jnp
      >>> t = one_hot_targets(jnp.array([1]), 4, label_smoothing=0.2)
      >>> [round(float(v), 4) for v in t[0]]
      [0.05, 0.85, 0.05, 0.05]
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing!r}.")
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"labels must be integers of shape (N,); got {labels.dtype} {labels.shape}."
        )
    hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return (1.0 - label_smoothing) * hot + label_smoothing / num_classes


def _mix_targets(targets: jax.Array, lam: jax.Array) -> jax.Array:
    lam = lam.astype(targets.dtype)
    return lam * targets + (1.0 - lam) * jnp.flip(targets, 0)


def mixup(
    images: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    key: jax.Array,
    *,
    alpha: float,
) -> tuple[jax.Array, jax.Array]:
    """Mixup of the batch with its reverse, one ``lam ~ Beta(alpha, alpha)`` for the batch.

    ``images`` ``(N, H, W, C)`` floating, ``targets`` ``(N, K)``; returns both mixed, same
    shapes. ``alpha=0`` returns them unchanged.
    """
    alpha = _check_alpha(alpha, "mixup alpha")
    images, targets = _check_pair(images, targets)
    if alpha == 0.0:
        return images, targets
    lam = jax.random.beta(key, alpha, alpha)
    mixed = lam.astype(images.dtype) * images + (1.0 - lam).astype(images.dtype) * jnp.flip(
        images, 0
    )
    return mixed, _mix_targets(targets, lam)


def cutmix_box_mask(
    height: int, width: int, lam: jax.typing.ArrayLike, center: jax.typing.ArrayLike
) -> jax.Array:
    """``(H, W)`` bool mask of CutMix's box for ``lam`` around ``center = (cy, cx)`` (ints).

    timm's ``rand_bbox``: ``cut = floor(sqrt(1 - lam) * side)`` per axis, rows
    ``[clip(cy - cut_h // 2), clip(cy + cut_h // 2))``, columns likewise, clipped to the image.
    """
    lam = jnp.asarray(lam, jnp.float32)
    ratio = jnp.sqrt(1.0 - lam)
    cut_h = jnp.floor(height * ratio).astype(jnp.int32)
    cut_w = jnp.floor(width * ratio).astype(jnp.int32)
    cy, cx = jnp.asarray(center[0], jnp.int32), jnp.asarray(center[1], jnp.int32)
    top, bottom = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
    left, right = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    return (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)


def cutmix(
    images: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    key: jax.Array,
    *,
    alpha: float,
) -> tuple[jax.Array, jax.Array]:
    """CutMix of the batch with its reverse: one box (:func:`cutmix_box_mask`, ``lam ~
    Beta(alpha, alpha)``, centre uniform over the pixels) for the whole batch; targets mixed by
    the kept area ``lam'``. ``alpha=0`` returns the inputs unchanged."""
    alpha = _check_alpha(alpha, "cutmix alpha")
    images, targets = _check_pair(images, targets)
    if alpha == 0.0:
        return images, targets
    lam_key, y_key, x_key = jax.random.split(key, 3)
    height, width = images.shape[1], images.shape[2]
    lam = jax.random.beta(lam_key, alpha, alpha)
    center = (
        jax.random.randint(y_key, (), 0, height),
        jax.random.randint(x_key, (), 0, width),
    )
    mask = cutmix_box_mask(height, width, lam, center)
    mixed = jnp.where(mask[None, :, :, None], jnp.flip(images, 0), images)
    kept = 1.0 - jnp.mean(mask.astype(jnp.float32))
    return mixed, _mix_targets(targets, kept)


def mix_batch(
    images: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    key: jax.Array,
    *,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    switch_prob: float = 0.5,
) -> tuple[jax.Array, jax.Array]:
    """Mixup, CutMix, or one of them per batch (CutMix with probability ``switch_prob``)
    when both alphas are > 0; both 0 returns the inputs unchanged."""
    mixup_alpha = _check_alpha(mixup_alpha, "mixup_alpha")
    cutmix_alpha = _check_alpha(cutmix_alpha, "cutmix_alpha")
    if not 0.0 <= switch_prob <= 1.0:
        raise ValueError(f"switch_prob must be in [0, 1]; got {switch_prob!r}.")
    if cutmix_alpha == 0.0:
        return mixup(images, targets, key, alpha=mixup_alpha)
    if mixup_alpha == 0.0:
        return cutmix(images, targets, key, alpha=cutmix_alpha)
    switch_key, mixup_key, cutmix_key = jax.random.split(key, 3)
    use_cutmix = jax.random.uniform(switch_key) < switch_prob
    a = mixup(images, targets, mixup_key, alpha=mixup_alpha)
    b = cutmix(images, targets, cutmix_key, alpha=cutmix_alpha)
    return jax.tree.map(lambda x, y: jnp.where(use_cutmix, y, x), a, b)
