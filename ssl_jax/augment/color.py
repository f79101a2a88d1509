"""Color transforms: HSV conversion, torchvision-style adjustments, jitter, grayscale, solarize.

Single-image functions (`adjust_*`, `to_grayscale`, `rgb_to_hsv`, `hsv_to_rgb`) accept an image
`(H, W, 3)` or a batch `(N, H, W, 3)` of floats in [0, 1] and return the input's dtype (a
float32 factor does not promote bfloat16 or float16 images). Batch augmentations take
`(images, key, **params)` with one PRNG key, split it into per-example keys and vmap.
"""

import functools
from numbers import Real

import jax
import jax.numpy as jnp

from ssl_jax.augment._batch import (
    apply_with_prob,
    check_batch,
    check_nonnegative,
    check_prob,
    map_examples,
)

_LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _check_rgb(images: jax.typing.ArrayLike, *, image_rank: bool = True) -> jax.Array:
    x = jnp.asarray(images)
    if x.ndim < 1 or x.shape[-1] != 3 or (image_rank and x.ndim not in (3, 4)):
        expected = "(H, W, 3) or (N, H, W, 3)" if image_rank else "(..., 3)"
        raise ValueError(f"expected RGB values with shape {expected}; got shape {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"expected floating point values in [0, 1]; got dtype {x.dtype}. Convert uint8 "
            "images with images.astype(jnp.float32) / 255."
        )
    return x


def _blend(a: jax.Array, b: jax.Array, factor: jax.typing.ArrayLike) -> jax.Array:
    """``clip(factor * a + (1 - factor) * b)`` in ``a``'s dtype (a float32 factor, such as a
    random draw, would promote bfloat16 images to float32)."""
    return jnp.clip(factor * a + (1.0 - factor) * b, 0.0, 1.0).astype(a.dtype)


def rgb_to_hsv(rgb: jax.typing.ArrayLike) -> jax.Array:
    """Converts RGB in [0, 1] to HSV in [0, 1] elementwise over the last axis of size 3.

    Same convention as Python's `colorsys.rgb_to_hsv`: hue is a fraction of a full turn, and
    hue and saturation are 0 for grays (max == min), saturation 0 for black.
    """
    rgb = _check_rgb(rgb, image_rank=False)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = jnp.max(rgb, axis=-1)
    minc = jnp.min(rgb, axis=-1)
    delta = maxc - minc
    s = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
    safe_delta = jnp.where(delta > 0, delta, 1.0)
    rc = (maxc - r) / safe_delta
    gc = (maxc - g) / safe_delta
    bc = (maxc - b) / safe_delta
    h = jnp.where(r == maxc, bc - gc, jnp.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
    h = jnp.where(delta > 0, jnp.mod(h / 6.0, 1.0), 0.0)
    return jnp.stack([h, s, maxc], axis=-1)


def hsv_to_rgb(hsv: jax.typing.ArrayLike) -> jax.Array:
    """Converts HSV in [0, 1] to RGB in [0, 1] elementwise over the last axis of size 3.

    Inverse of `rgb_to_hsv`, written branch-free: with d = 6h, each channel is
    v * (1 - s + s * c) where c_r = clip(|d - 3| - 1), c_g = clip(2 - |d - 2|),
    c_b = clip(2 - |d - 4|), all clipped to [0, 1].
    """
    hsv = _check_rgb(hsv, image_rank=False)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    d = jnp.mod(h, 1.0) * 6.0
    cr = jnp.clip(jnp.abs(d - 3.0) - 1.0, 0.0, 1.0)
    cg = jnp.clip(2.0 - jnp.abs(d - 2.0), 0.0, 1.0)
    cb = jnp.clip(2.0 - jnp.abs(d - 4.0), 0.0, 1.0)
    rgb = jnp.stack([cr, cg, cb], axis=-1)
    return v[..., None] * (1.0 - s[..., None] + s[..., None] * rgb)


def to_grayscale(images: jax.typing.ArrayLike) -> jax.Array:
    """Returns the ITU-R 601-2 luma 0.299 R + 0.587 G + 0.114 B, repeated on 3 channels."""
    x = _check_rgb(images)
    wr, wg, wb = _LUMA_WEIGHTS
    gray = wr * x[..., 0] + wg * x[..., 1] + wb * x[..., 2]
    return jnp.broadcast_to(gray[..., None], x.shape)


def _check_factor(factor: jax.typing.ArrayLike, name: str) -> None:
    if isinstance(factor, Real) and not factor >= 0:
        raise ValueError(f"{name} factor must be >= 0; got {factor!r}.")


def adjust_brightness(images: jax.typing.ArrayLike, factor: jax.typing.ArrayLike) -> jax.Array:
    """Multiplies by `factor` and clips to [0, 1] (torchvision `adjust_brightness`)."""
    _check_factor(factor, "brightness")
    x = _check_rgb(images)
    return jnp.clip(x * factor, 0.0, 1.0).astype(x.dtype)


def adjust_contrast(images: jax.typing.ArrayLike, factor: jax.typing.ArrayLike) -> jax.Array:
    """Blends each image with the mean of its grayscale, clipped: clip(f x + (1 - f) mean(gray)).

    torchvision `adjust_contrast` semantics: one scalar mean per image over all pixels of the
    luma image; factor 0 gives a uniform gray image, 1 the original.
    """
    _check_factor(factor, "contrast")
    x = _check_rgb(images)
    mean = jnp.mean(to_grayscale(x)[..., :1], axis=(-3, -2, -1), keepdims=True)
    return _blend(x, mean, factor)


def adjust_saturation(images: jax.typing.ArrayLike, factor: jax.typing.ArrayLike) -> jax.Array:
    """Blends with the grayscale image, clipped: clip(f x + (1 - f) gray(x)) (torchvision)."""
    _check_factor(factor, "saturation")
    x = _check_rgb(images)
    return _blend(x, to_grayscale(x), factor)


def adjust_hue(images: jax.typing.ArrayLike, delta: jax.typing.ArrayLike) -> jax.Array:
    """Rotates hue by `delta` turns in [-0.5, 0.5]: H' = (H + delta) mod 1 in HSV (torchvision)."""
    if isinstance(delta, Real) and not -0.5 <= delta <= 0.5:
        raise ValueError(f"hue delta must be in [-0.5, 0.5]; got {delta!r}.")
    x = _check_rgb(images)
    hsv = rgb_to_hsv(x)
    hsv = hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + delta, 1.0).astype(hsv.dtype))
    return jnp.clip(hsv_to_rgb(hsv), 0.0, 1.0)


def _color_jitter_one(
    image: jax.Array,
    key: jax.Array,
    *,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    prob: float,
) -> jax.Array:
    # One draw per example: [apply, brightness, contrast, saturation, hue, 4 order keys].
    u = jax.random.uniform(key, (9,))

    def factor(draw, strength):
        low = max(0.0, 1.0 - strength)
        return low + (1.0 + strength - low) * draw

    ops = []
    if brightness > 0:
        ops.append(functools.partial(adjust_brightness, factor=factor(u[1], brightness)))
    if contrast > 0:
        ops.append(functools.partial(adjust_contrast, factor=factor(u[2], contrast)))
    if saturation > 0:
        ops.append(functools.partial(adjust_saturation, factor=factor(u[3], saturation)))
    if hue > 0:
        ops.append(functools.partial(adjust_hue, delta=hue * (2.0 * u[4] - 1.0)))
    order = jnp.argsort(u[5 : 5 + len(ops)])
    x = image
    for position in range(len(ops)):
        x = jax.lax.switch(order[position], ops, x)
    return apply_with_prob(u[0], prob, x, image)


def color_jitter(
    images: jax.typing.ArrayLike,
    key: jax.Array,
    *,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    prob: float = 0.8,
) -> jax.Array:
    """Randomly jitters brightness, contrast, saturation and hue, in a random order per image.

    torchvision `ColorJitter` semantics, applied to each image with probability `prob` (SimCLR's
    `RandomApply(ColorJitter, p=0.8)`): factors are uniform in [max(0, 1 - s), 1 + s] for
    brightness/contrast/saturation strength s, the hue shift uniform in [-hue, hue]; the four
    adjustments run in a random permutation (as torchvision and DeepMind BYOL do), each clipped
    to [0, 1]. A strength of 0 disables that adjustment. Brightness is multiplicative, as in
    torchvision (TF SimCLR v1 and DeepMind BYOL add a brightness delta instead).
    """
    images = check_batch(images)
    brightness = check_nonnegative(brightness, name="brightness")
    contrast = check_nonnegative(contrast, name="contrast")
    saturation = check_nonnegative(saturation, name="saturation")
    hue = check_nonnegative(hue, name="hue")
    if hue > 0.5:
        raise ValueError(f"hue must be in [0, 0.5]; got {hue!r}.")
    prob = check_prob(prob)
    if prob == 0.0 or brightness == contrast == saturation == hue == 0.0:
        return images
    fn = functools.partial(
        _color_jitter_one,
        brightness=brightness,
        contrast=contrast,
        saturation=saturation,
        hue=hue,
        prob=prob,
    )
    return map_examples(fn, images, key)


def _random_grayscale_one(image: jax.Array, key: jax.Array, *, prob: float) -> jax.Array:
    return apply_with_prob(jax.random.uniform(key), prob, to_grayscale(image), image)


def random_grayscale(
    images: jax.typing.ArrayLike, key: jax.Array, *, prob: float = 0.2
) -> jax.Array:
    """Converts each image to 3-channel grayscale (`to_grayscale`) with probability `prob`."""
    images = check_batch(images)
    prob = check_prob(prob)
    if prob == 0.0:
        return images
    return map_examples(functools.partial(_random_grayscale_one, prob=prob), images, key)


def _solarize_one(image: jax.Array, key: jax.Array, *, prob: float, threshold: float) -> jax.Array:
    solarized = jnp.where(image >= threshold, 1.0 - image, image)
    return apply_with_prob(jax.random.uniform(key), prob, solarized, image)


def solarize(
    images: jax.typing.ArrayLike, key: jax.Array, *, prob: float, threshold: float = 0.5
) -> jax.Array:
    """Inverts pixels x >= threshold to 1 - x, per image with probability `prob`.

    BYOL (Grill et al. 2020, table 6) solarizes the second view with probability 0.2 at
    threshold 0.5 (128 of 255 in PIL's `ImageOps.solarize`).
    """
    images = check_batch(images)
    prob = check_prob(prob)
    if not isinstance(threshold, Real) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1]; got {threshold!r}.")
    if prob == 0.0:
        return images
    fn = functools.partial(_solarize_one, prob=prob, threshold=float(threshold))
    return map_examples(fn, images, key)
