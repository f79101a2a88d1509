"""Rotation prediction (RotNet; Gidaris, Singh and Komodakis, ICLR 2018, "Unsupervised
representation learning by predicting image rotations", https://arxiv.org/abs/1803.07728).

The network classifies which of the four rotations by ``k * 90`` degrees, ``k`` in 0..3, was
applied to an image. Rotations by multiples of 90 degrees are exact pixel permutations, so they
leave no interpolation artefacts for the network to exploit. The paper feeds all four rotated
copies of every image in the same batch (:func:`rotate_batch`); :func:`rotate` applies one given
rotation per image, for one random rotation per image instead.

Label ``k`` is a counter-clockwise rotation by ``k * 90`` degrees of the (H, W) plane, the same
as ``np.rot90(image, k)``: the image's top row becomes its left column for ``k = 1``.
"""

import jax
import jax.numpy as jnp

from ssl_jax.augment._batch import check_float_batch

__all__ = ["NUM_ROTATIONS", "rotate", "rotate_batch"]

NUM_ROTATIONS = 4


def _check_square_batch(images: jax.typing.ArrayLike) -> jax.Array:
    images = check_float_batch(images)
    if images.shape[1] != images.shape[2]:
        raise ValueError(
            f"rotation needs square images (H == W) so that all four rotations have the same "
            f"shape; got H, W = {images.shape[1]}, {images.shape[2]}. Crop or resize them to a "
            "square first."
        )
    return images


def _all_rotations(images: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, 4, H, W, C) with ``out[:, k] = rot90(images, k)`` on (H, W)."""
    return jnp.stack([jnp.rot90(images, k, axes=(1, 2)) for k in range(NUM_ROTATIONS)], axis=1)


def rotate_batch(images: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
    """All four rotations of every image: (N, H, W, C) -> ``x`` (4N, H, W, C), ``labels`` (4N,).

    Image-major order: rows ``4i .. 4i + 3`` of ``x`` hold image ``i`` rotated by 0, 90, 180 and
    270 degrees counter-clockwise, so ``x[4 * i + k] == np.rot90(images[i], k)`` and
    ``labels[4 * i + k] == k`` (int32). As in the paper, the four copies of an image go in the
    same batch (instead of one random rotation per image), so the network sees 4N inputs per
    N images. Square images only.

    Examples:
      >>> import jax.numpy as jnp
      >>> x, labels = rotate_batch(jnp.zeros((2, 8, 8, 3)))
      >>> x.shape, labels.tolist()
      ((8, 8, 8, 3), [0, 1, 2, 3, 0, 1, 2, 3])
    """
    images = _check_square_batch(images)
    n, side, _, channels = images.shape
    x = _all_rotations(images).reshape(n * NUM_ROTATIONS, side, side, channels)
    labels = jnp.tile(jnp.arange(NUM_ROTATIONS, dtype=jnp.int32), n)
    return x, labels


def rotate(images: jax.typing.ArrayLike, k: jax.typing.ArrayLike) -> jax.Array:
    """Rotates image ``i`` by ``k[i] * 90`` degrees counter-clockwise: (N, H, W, C) -> same shape.

    ``k`` is an integer array of shape (N,), traced or not; it is taken modulo 4 (like
    ``np.rot90``), so ``k = -1`` is a clockwise quarter turn. ``out[i] == np.rot90(images[i],
    k[i])``. Draw ``k = jax.random.randint(key, (N,), 0, 4)`` for one random rotation per image;
    ``k`` is then also the label. Square images only.
    """
    images = _check_square_batch(images)
    k = jnp.asarray(k)
    if k.shape != (images.shape[0],) or not jnp.issubdtype(k.dtype, jnp.integer):
        raise ValueError(
            f"k must be an integer array of shape (N,) = ({images.shape[0]},), one rotation "
            f"count per image; got {k.dtype} {k.shape}."
        )
    rotations = _all_rotations(images)
    return rotations[jnp.arange(images.shape[0]), k % NUM_ROTATIONS]
