"""Plumbing shared by the batch augmentations: static-argument checks and per-example mapping.

Checks run on Python values while the function is traced, so a bad hyperparameter fails with a
`ValueError` before anything is compiled.
"""

from collections.abc import Callable, Sequence
from numbers import Integral, Real

import jax
import jax.numpy as jnp

from ssl_jax.explicit_sharding import like_leading_axis


def check_batch(images: jax.typing.ArrayLike, *, name: str = "images") -> jax.Array:
    """Returns `images` as an array after checking it is a floating NHWC batch of RGB images."""
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"{name} must be an NHWC batch of RGB images with shape (N, H, W, 3); got shape "
            f"{images.shape}. For a single image pass images[None]."
        )
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"{name} must be floating point in [0, 1]; got dtype {images.dtype}. Convert uint8 "
            "images with images.astype(jnp.float32) / 255."
        )
    return images


def check_float_batch(images: jax.typing.ArrayLike, *, name: str = "images") -> jax.Array:
    """Returns `images` as an array after checking it is a floating NHWC batch (any channels)."""
    images = jnp.asarray(images)
    if images.ndim != 4 or not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"{name} must be a floating NHWC batch (N, H, W, C) in [0, 1]; got {images.dtype} "
            f"{images.shape}. For a single image pass images[None]; convert uint8 with "
            "images.astype(jnp.float32) / 255."
        )
    return images


def check_prob(prob: float, *, name: str = "prob") -> float:
    """Returns `prob` as a float after checking it lies in [0, 1]."""
    if not isinstance(prob, Real) or not 0.0 <= prob <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1]; got {prob!r}.")
    return float(prob)


def check_nonnegative(value: float, *, name: str) -> float:
    """Returns `value` as a float after checking it is a number >= 0."""
    if not isinstance(value, Real) or not value >= 0.0:
        raise ValueError(f"{name} must be a number >= 0; got {value!r}.")
    return float(value)


def check_interval(
    interval: Sequence[float],
    *,
    name: str,
    low: float = 0.0,
    high: float = float("inf"),
    low_inclusive: bool = False,
) -> tuple[float, float]:
    """Returns `(a, b)` as floats after checking low < a <= b <= high (low <= a if inclusive)."""
    try:
        a, b = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a pair of numbers (min, max); got {interval!r}."
        ) from None
    low_ok = a >= low if low_inclusive else a > low
    if not (low_ok and a <= b <= high):
        bracket = "[" if low_inclusive else "("
        raise ValueError(
            f"{name} must satisfy min <= max within {bracket}{low}, {high}]; got {interval!r}."
        )
    return a, b


def check_size(size: int, *, name: str = "size") -> int:
    """Returns `size` as an int after checking it is a positive integer."""
    if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
        raise ValueError(f"{name} must be a positive integer; got {size!r}.")
    return int(size)


def map_examples(
    fn: Callable[[jax.Array, jax.Array], jax.Array], images: jax.Array, key: jax.Array
) -> jax.Array:
    """Applies `fn(image, key)` to each example with keys `jax.random.split(key, N)`, via vmap.

    The keys are split over devices as the images' batch, which a batch sharded over Explicit
    mesh axes needs (see :mod:`ssl_jax.explicit_sharding`).
    """
    keys = like_leading_axis(jax.random.split(key, images.shape[0]), images)
    return jax.vmap(fn)(images, keys)


def apply_with_prob(draw: jax.Array, prob: float, new: jax.Array, old: jax.Array) -> jax.Array:
    """Returns `new` if the uniform [0, 1) sample `draw` is below `prob`, else `old`."""
    return jnp.where(draw < prob, new, old)
