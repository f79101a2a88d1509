"""Geometric transforms: Inception-style random resized crop, horizontal flip, eval resize.

Resizing is a separable linear interpolation written as two dense weight matrices,
out = W_rows @ image @ W_cols^T, so a crop box with traced position and size still gives a
fixed output shape under `jit`. The weights follow PIL / torchvision `antialias=True` bilinear:
output pixel k of a box [start, start + length) has its centre at
c = start + (k + 0.5) * length / size, input pixel p weight max(0, 1 - |p + 0.5 - c| / a) with
a = max(length / size, 1) (a wider triangle when shrinking, to avoid aliasing), restricted to
pixels inside the box and normalized to sum to 1. A box of the output size is copied exactly.
"""

import functools
import math

import jax
import jax.numpy as jnp

from ssl_jax.augment._batch import (
    apply_with_prob,
    check_batch,
    check_interval,
    check_prob,
    check_size,
    map_examples,
)

_MAX_CROP_ATTEMPTS = 10


def _interp_weights(
    start: jax.typing.ArrayLike, length: jax.typing.ArrayLike, in_size: int, out_size: int
) -> jax.Array:
    """Returns the (out_size, in_size) antialiased bilinear weights for the box [start, +length)."""
    start = jnp.asarray(start, jnp.float32)
    length = jnp.asarray(length, jnp.float32)
    scale = length / out_size
    support = jnp.maximum(scale, 1.0)
    centers = start + (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * scale
    pixels = jnp.arange(in_size, dtype=jnp.float32)
    weights = jnp.maximum(0.0, 1.0 - jnp.abs(pixels + 0.5 - centers[:, None]) / support)
    inside = (pixels >= start) & (pixels < start + length)
    weights = jnp.where(inside, weights, 0.0)
    return weights / jnp.sum(weights, axis=1, keepdims=True)


def _resize_box(
    image: jax.Array,
    top: jax.typing.ArrayLike,
    left: jax.typing.ArrayLike,
    height: jax.typing.ArrayLike,
    width: jax.typing.ArrayLike,
    size: int,
) -> jax.Array:
    """Resizes the box (top, left, height, width) of one (H, W, C) image to (size, size, C)."""
    rows = _interp_weights(top, height, image.shape[0], size)
    cols = _interp_weights(left, width, image.shape[1], size)
    return jnp.einsum(
        "oh,hwc,pw->opc", rows, image, cols, precision=jax.lax.Precision.HIGHEST
    ).astype(image.dtype)


def _sample_crop_box(
    key: jax.Array,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Samples (top, left, box_height, box_width) as torchvision `RandomResizedCrop.get_params`.

    Draws 10 candidates with area fraction ~ U(scale) and aspect ratio w/h log-uniform in ratio,
    w = round(sqrt(area * r)), h = round(sqrt(area / r)); keeps the first that fits in the image,
    at a uniformly random position. If none fits, takes the central crop of the whole image
    clamped to the ratio range.
    """
    n = _MAX_CROP_ATTEMPTS
    u = jax.random.uniform(key, (2 * n + 2,))
    area = (scale[0] + (scale[1] - scale[0]) * u[:n]) * (height * width)
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    log_ratio = log_low + (log_high - log_low) * u[n : 2 * n]
    aspect = jnp.exp(log_ratio)
    w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = jnp.argmax(fits)
    found = jnp.any(fits)

    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = round(height * ratio[1]), height
    else:
        fallback_w, fallback_h = width, height

    box_h = jnp.where(found, h[first], fallback_h)
    box_w = jnp.where(found, w[first], fallback_w)
    top = jnp.floor(u[2 * n] * (height - box_h + 1)).astype(jnp.int32)
    left = jnp.floor(u[2 * n + 1] * (width - box_w + 1)).astype(jnp.int32)
    top = jnp.where(found, jnp.minimum(top, height - box_h), (height - fallback_h) // 2)
    left = jnp.where(found, jnp.minimum(left, width - box_w), (width - fallback_w) // 2)
    return top, left, box_h, box_w


def _random_resized_crop_one(
    image: jax.Array,
    key: jax.Array,
    *,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> jax.Array:
    top, left, box_h, box_w = _sample_crop_box(key, image.shape[0], image.shape[1], scale, ratio)
    return _resize_box(image, top, left, box_h, box_w, size)


def random_resized_crop(
    images: jax.typing.ArrayLike,
    key: jax.Array,
    *,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> jax.Array:
    """Crops a random box of each image and resizes it: (N, H, W, C) -> (N, size, size, C).

    Inception-style crop (Szegedy et al. 2015) with torchvision `RandomResizedCrop` semantics:
    area fraction uniform in `scale`, aspect ratio log-uniform in `ratio`, up to 10 attempts to
    fit, then a center-crop fallback; the box is resized with antialiased bilinear weights (see
    the module docstring). The input may be larger or smaller than `size`.
    """
    images = check_batch(images)
    size = check_size(size)
    scale = check_interval(scale, name="scale", high=1.0)
    ratio = check_interval(ratio, name="ratio")
    fn = functools.partial(_random_resized_crop_one, size=size, scale=scale, ratio=ratio)
    return map_examples(fn, images, key)


def _random_horizontal_flip_one(image: jax.Array, key: jax.Array, *, prob: float) -> jax.Array:
    return apply_with_prob(jax.random.uniform(key), prob, image[:, ::-1], image)


def random_horizontal_flip(
    images: jax.typing.ArrayLike, key: jax.Array, *, prob: float = 0.5
) -> jax.Array:
    """Mirrors each image left-right (reverses the W axis) with probability `prob`."""
    images = check_batch(images)
    prob = check_prob(prob)
    if prob == 0.0:
        return images
    return map_examples(functools.partial(_random_horizontal_flip_one, prob=prob), images, key)


def center_crop_resize(
    images: jax.typing.ArrayLike, *, size: int, crop_fraction: float = 1.0
) -> jax.Array:
    """Resizes the central square of each image to (size, size), deterministically, for evaluation.

    The square has side round(crop_fraction * min(H, W)); for square inputs and the default
    crop_fraction 1 this is a plain antialiased bilinear resize. crop_fraction 0.875 gives the
    usual ImageNet evaluation crop (resize to size / 0.875, center-crop size) up to rounding.
    """
    images = check_batch(images)
    size = check_size(size)
    if not isinstance(crop_fraction, int | float) or not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be a number in (0, 1]; got {crop_fraction!r}.")
    height, width = images.shape[1], images.shape[2]
    side = max(1, round(crop_fraction * min(height, width)))
    rows = _interp_weights((height - side) // 2, side, height, size)
    cols = _interp_weights((width - side) // 2, side, width, size)
    return jnp.einsum(
        "oh,nhwc,pw->nopc", rows, images, cols, precision=jax.lax.Precision.HIGHEST
    ).astype(images.dtype)
