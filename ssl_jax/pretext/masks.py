"""Inpainting masks and their application, after Context Encoders (Pathak et al., 2016).

Pathak et al. train a network to fill a removed image region from its surroundings (section 3.3,
"Region masks") with three kinds of region:

- central block (:func:`central_block_mask`): the central square, 64x64 of a 128x128 image, a
  quarter of the area;
- random blocks (:func:`random_block_masks`): several smaller, possibly overlapping rectangles at
  random positions, together covering up to 1/4 of the image;
- random regions (:func:`random_region_masks`): arbitrary shapes, "covering up to 1/4 of the
  image". The paper takes them from PASCAL VOC 2012 segmentations; we use the smooth-noise
  substitute of the authors' released ``train_random.lua`` instead (see the function).

Masks are bool arrays, ``True`` where pixels are removed (the region to inpaint), ``(H, W)`` for
the fixed central block and ``(N, H, W)`` (one per example, drawn with
``jax.random.split(key, N)``) for the random ones. :func:`apply_mask` writes the fill value
into the removed pixels; the reconstruction loss over them is
:func:`ssl_jax.losses.reconstruction.masked_mse`.

Sizes are static Python ints checked while tracing, so a bad hyperparameter raises a
``ValueError`` before anything is compiled.

Reference: Pathak, Krähenbühl, Donahue, Darrell, Efros, "Context Encoders: Feature Learning by
Inpainting", CVPR 2016. https://arxiv.org/abs/1604.07379
"""

import math
from numbers import Real

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.augment._batch import check_float_batch, check_size

__all__ = ["apply_mask", "central_block_mask", "random_block_masks", "random_region_masks"]

# fraction * size is floored after adding this, so that e.g. 0.29 * 100 = 28.999999999999996
# still gives 29 pixels.
_FLOOR_SLACK = 1e-9


def _check_fraction(value: float, name: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool)
    low_ok = ok and (value >= 0.0 if allow_zero else value > 0.0)
    if not (low_ok and value <= 1.0):
        bracket = "[0" if allow_zero else "(0"
        raise ValueError(f"{name} must be a number in {bracket}, 1]; got {value!r}.")
    return float(value)


def _scaled(fraction: float, size: int) -> int:
    """``floor(fraction * size)``, robust to float round-off just below an integer."""
    return int(math.floor(fraction * size + _FLOOR_SLACK))


def _box(height: int, width: int, top, left, box_height: int, box_width: int) -> jax.Array:
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    return (rows >= top) & (rows < top + box_height) & (cols >= left) & (cols < left + box_width)


def central_block_mask(height: int, width: int, *, fraction: float = 0.5) -> jax.Array:
    """``(H, W)`` bool mask, ``True`` on the central block of sides ``fraction`` of the image's.

    The block has ``h = floor(fraction * H)`` rows and ``w = floor(fraction * W)`` columns,
    starting at row ``(H - h) // 2`` and column ``(W - w) // 2``: when ``H - h`` is odd the extra
    row of context goes below the block (and the extra column to its right). The default is
    Pathak et al.'s central region: rows and columns 32 to 95 of a 128x128 image, a quarter of
    its area (as ``train.lua``'s ``1 + fineSize/4 … fineSize/2 + fineSize/4``, 1-based).

    Their released code predicts the whole central block but fills only its interior, shrunk by
    ``overlapPred`` pixels per side (4 in their README's commands; the paper states 7), so the
    prediction overlaps the context. For 4 px that hole is
    ``central_block_mask(128, 128, fraction=(64 - 2 * 4) / 128)``.

    Args:
      height: image height ``H`` in pixels.
      width: image width ``W`` in pixels.
      fraction: side of the block as a fraction of the image's side, in (0, 1]. Must leave the
        block at least one pixel wide and high.

    Returns:
      ``(H, W)`` bool array.

    Examples:
      >>> m = central_block_mask(8, 8)
      >>> int(m.sum()), bool(m[2, 2]), bool(m[5, 5]), bool(m[6, 6])
      (16, True, True, False)
    """
    height = check_size(height, name="height")
    width = check_size(width, name="width")
    fraction = _check_fraction(fraction, "fraction")
    box_height, box_width = _scaled(fraction, height), _scaled(fraction, width)
    if box_height < 1 or box_width < 1:
        raise ValueError(
            f"fraction={fraction} of a {height}x{width} image gives an empty central block "
            f"({box_height}x{box_width} pixels); use fraction >= {1 / min(height, width):.4g}."
        )
    top, left = (height - box_height) // 2, (width - box_width) // 2
    mask = np.zeros((height, width), bool)
    mask[top : top + box_height, left : left + box_width] = True
    return jnp.asarray(mask)


def random_block_masks(
    key: jax.Array,
    n: int,
    height: int,
    width: int,
    *,
    num_blocks: int,
    block_fraction: float,
    max_area: float = 0.25,
) -> jax.Array:
    """``(N, H, W)`` bool masks: the union of ``num_blocks`` random blocks per image.

    Pathak et al.'s "random block" masks: instead of one large central block, "a number of
    smaller possibly overlapping masks, covering up to 1/4 of the image", at random places so
    the network cannot latch onto a fixed boundary. Every block has ``floor(block_fraction * H)``
    rows and ``floor(block_fraction * W)`` columns and lies inside the image, its top-left corner
    uniform over the valid positions, independently per block and per example.

    The area bound holds for every sample by construction, not by rejection: the blocks' total
    area ``num_blocks * h * w`` must be at most ``max_area * H * W`` (checked here, raising a
    ``ValueError`` otherwise), and the union of overlapping blocks is no larger than their sum.
    Overlaps make the covered area vary between samples, from one block's area to that total.
    Pathak et al. give no block count or size; e.g. ``num_blocks=4, block_fraction=0.25``
    removes up to 1/4 of the image.

    Args:
      key: PRNG key; example ``i`` uses ``jax.random.split(key, n)[i]``.
      n: number of masks ``N``.
      height: image height ``H``.
      width: image width ``W``.
      num_blocks: blocks per image (positive int).
      block_fraction: side of each block as a fraction of the image's side, in (0, 1].
      max_area: bound on the removed fraction of the image, in (0, 1].

    Returns:
      ``(N, H, W)`` bool array.
    """
    n = check_size(n, name="n")
    height = check_size(height, name="height")
    width = check_size(width, name="width")
    num_blocks = check_size(num_blocks, name="num_blocks")
    block_fraction = _check_fraction(block_fraction, "block_fraction")
    max_area = _check_fraction(max_area, "max_area")
    box_height, box_width = _scaled(block_fraction, height), _scaled(block_fraction, width)
    if box_height < 1 or box_width < 1:
        raise ValueError(
            f"block_fraction={block_fraction} of a {height}x{width} image gives empty blocks "
            f"({box_height}x{box_width} pixels); raise block_fraction."
        )
    total = num_blocks * box_height * box_width
    if total > max_area * height * width + _FLOOR_SLACK:
        raise ValueError(
            f"{num_blocks} blocks of {box_height}x{box_width} pixels can cover {total} of the "
            f"{height * width} pixels, more than max_area={max_area}; lower num_blocks or "
            "block_fraction (num_blocks * block_fraction**2 <= max_area), or raise max_area."
        )

    def one(example_key: jax.Array) -> jax.Array:
        top_key, left_key = jax.random.split(example_key)
        tops = jax.random.randint(top_key, (num_blocks, 1, 1), 0, height - box_height + 1)
        lefts = jax.random.randint(left_key, (num_blocks, 1, 1), 0, width - box_width + 1)
        return jnp.any(_box(height, width, tops, lefts, box_height, box_width), axis=0)

    return jax.vmap(one)(jax.random.split(key, n))


def random_region_masks(
    key: jax.Array,
    n: int,
    height: int,
    width: int,
    *,
    area: float = 0.25,
    grid_size: int = 8,
) -> jax.Array:
    """``(N, H, W)`` bool masks of random smooth blobs removing exactly ``floor(area * H * W)``
    pixels each: a stand-in for Pathak et al.'s "random region" masks.

    The paper removes "arbitrary shapes ... obtained from random masks in the PASCAL VOC 2012
    dataset", deformed and pasted at random places, "again covering up to 1/4 of the image". We
    have no PASCAL VOC segmentations offline, so this is a substitute, close to the authors' own
    released ``train_random.lua``: that code thresholds a bicubically upsampled uniform noise
    field (one noise value per ~17 px, i.e. ~8 across a 128 px crop) at 0.25 and accepts a
    random crop of it when 20-30% of the pixels fall below the threshold. Here, per example:

    1. draw a ``grid_size`` x ``grid_size`` field of uniform noise;
    2. upsample it bicubically to ``H`` x ``W`` (``jax.image.resize``), a smooth random field;
    3. remove the ``k = floor(area * H * W)`` pixels of lowest value (ties broken by position),
       i.e. threshold the field at its own ``area`` quantile.

    Step 3 replaces the authors' rejection sampling (not jittable) and makes the area exact, so
    the tolerance is zero: every mask has exactly ``k`` ``True`` pixels. The shapes are one or a
    few smooth blobs (connectedness is not guaranteed); larger ``grid_size`` gives more, smaller
    blobs. Unlike the authors' code, which shares one mask across the batch, each example gets
    its own. Object silhouettes (PASCAL's shapes) are not reproduced.

    Args:
      key: PRNG key; example ``i`` uses ``jax.random.split(key, n)[i]``.
      n: number of masks ``N``.
      height: image height ``H``.
      width: image width ``W``.
      area: removed fraction of the image, in (0, 1]; must leave ``k >= 1``.
      grid_size: side of the noise grid (int >= 2); the blobs' scale is about
        ``side / grid_size``.

    Returns:
      ``(N, H, W)`` bool array.
    """
    n = check_size(n, name="n")
    height = check_size(height, name="height")
    width = check_size(width, name="width")
    area = _check_fraction(area, "area")
    grid_size = check_size(grid_size, name="grid_size")
    if grid_size < 2:
        raise ValueError(f"grid_size must be an integer >= 2; got {grid_size}.")
    num_removed = _scaled(area, height * width)
    if num_removed < 1:
        raise ValueError(
            f"area={area} of a {height}x{width} image removes no pixel; use area >= "
            f"{1 / (height * width):.4g}."
        )

    def one(example_key: jax.Array) -> jax.Array:
        noise = jax.random.uniform(example_key, (grid_size, grid_size))
        field = jax.image.resize(noise, (height, width), method="cubic", antialias=False)
        order = jnp.argsort(field.reshape(-1), stable=True)
        removed = jnp.zeros(height * width, bool).at[order[:num_removed]].set(True)
        return removed.reshape(height, width)

    return jax.vmap(one)(jax.random.split(key, n))


def apply_mask(
    images: jax.typing.ArrayLike, mask: jax.typing.ArrayLike, *, fill: jax.typing.ArrayLike
) -> jax.Array:
    """``images`` with the masked pixels replaced by ``fill``: the context encoder's input.

    ``out[n, y, x, c] = fill[c] if mask[n, y, x] else images[n, y, x, c]``. Pathak et al. fill
    the removed region with the dataset's mean colour, so the fill carries no information about
    the removed content; the authors' code fills ``2 * (117, 104, 123) / 255 - 1`` in its
    [-1, 1] scaling, i.e. ``fill=jnp.array([117, 104, 123]) / 255`` for images in [0, 1].

    Args:
      images: ``(N, H, W, C)`` floating images.
      mask: bool ``(N, H, W)``, one mask per image, or ``(H, W)`` shared by the batch (e.g.
        :func:`central_block_mask`); ``True`` = removed.
      fill: the per-channel value, a scalar or shape ``(C,)``; cast to the images' dtype.

    Returns:
      ``(N, H, W, C)`` array of the images' dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> out = apply_mask(jnp.ones((1, 4, 4, 3)), central_block_mask(4, 4), fill=jnp.zeros(3))
      >>> float(out.sum()) / 3
      12.0
    """
    images, mask, fill = check_float_batch(images), jnp.asarray(mask), jnp.asarray(fill)
    n, height, width, channels = images.shape
    if mask.dtype != jnp.bool_ or mask.shape not in ((height, width), (n, height, width)):
        raise ValueError(
            f"mask must be bool of shape (H, W) = {(height, width)} or (N, H, W) = "
            f"{(n, height, width)} for images of shape {images.shape}; got {mask.dtype} "
            f"{mask.shape}."
        )
    if fill.ndim > 1 or fill.size not in (1, channels):
        raise ValueError(
            f"fill must be a scalar or one value per channel, shape ({channels},); got shape "
            f"{fill.shape}."
        )
    return jnp.where(mask[..., None], fill.reshape(-1).astype(images.dtype), images)
