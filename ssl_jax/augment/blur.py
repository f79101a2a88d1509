"""Random Gaussian blur with a per-image sigma, as in SimCLR and BYOL."""

import functools
from numbers import Integral

import jax
import jax.numpy as jnp

from ssl_jax.augment._batch import (
    apply_with_prob,
    check_batch,
    check_interval,
    check_prob,
    map_examples,
)


def gaussian_kernel(sigma: jax.typing.ArrayLike, *, kernel_size: int) -> jax.Array:
    """Returns the 1-D Gaussian kernel k_t ∝ exp(-t^2 / (2 sigma^2)), |t| <= size // 2, sum 1."""
    radius = _check_kernel_size(kernel_size) // 2
    t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    kernel = jnp.exp(-0.5 * jnp.square(t / sigma))
    return kernel / jnp.sum(kernel)


def _check_kernel_size(kernel_size: int) -> int:
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, Integral)
        or kernel_size < 1
        or kernel_size % 2 == 0
    ):
        raise ValueError(f"kernel_size must be a positive odd integer; got {kernel_size!r}.")
    return int(kernel_size)


def _blur_axis(image: jax.Array, kernel: jax.Array, axis: int) -> jax.Array:
    """Correlates `image` with the symmetric 1-D `kernel` along `axis`, reflect-padded."""
    radius = kernel.shape[0] // 2
    n = image.shape[axis]
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(image, pad, mode="reflect")
    out = jnp.zeros_like(image)
    for t in range(kernel.shape[0]):
        out = out + kernel[t] * jax.lax.slice_in_dim(padded, t, t + n, axis=axis)
    return out


def _gaussian_blur_one(
    image: jax.Array,
    key: jax.Array,
    *,
    prob: float,
    sigma: tuple[float, float],
    kernel_size: int,
) -> jax.Array:
    draw_apply, draw_sigma = jax.random.uniform(key, (2,))
    s = sigma[0] + (sigma[1] - sigma[0]) * draw_sigma
    kernel = gaussian_kernel(s, kernel_size=kernel_size).astype(image.dtype)
    blurred = _blur_axis(_blur_axis(image, kernel, 0), kernel, 1)
    return apply_with_prob(draw_apply, prob, blurred, image)


def gaussian_blur(
    images: jax.typing.ArrayLike,
    key: jax.Array,
    *,
    prob: float,
    sigma: tuple[float, float] = (0.1, 2.0),
    kernel_size: int | None = None,
) -> jax.Array:
    """Blurs each image with probability `prob`, with a Gaussian of sigma ~ U(sigma) per image.

    Separable (rows, then columns) with reflect padding, so a constant image stays constant.
    The default kernel size follows SimCLR (Chen et al. 2020, appendix A): about 10% of the image
    side, made odd, i.e. 2 * (min(H, W) // 20) + 1 (23 for 224 pixels), at least 3.
    BYOL (Grill et al. 2020, table 6) uses prob 1.0 for the first view and 0.1 for the second.
    """
    images = check_batch(images)
    prob = check_prob(prob)
    sigma = check_interval(sigma, name="sigma")
    side = min(images.shape[1], images.shape[2])
    if kernel_size is None:
        kernel_size = 2 * max(side // 20, 1) + 1
    kernel_size = _check_kernel_size(kernel_size)
    if kernel_size // 2 >= side:
        raise ValueError(
            f"kernel_size {kernel_size} is too large for {side}-pixel images: reflect padding "
            f"needs kernel_size // 2 < min(H, W); use kernel_size <= {2 * side - 1}."
        )
    if prob == 0.0:
        return images
    fn = functools.partial(_gaussian_blur_one, prob=prob, sigma=sigma, kernel_size=kernel_size)
    return map_examples(fn, images, key)
