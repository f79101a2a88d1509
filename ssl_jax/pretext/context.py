"""Relative patch position, or context prediction (Doersch, Gupta and Efros, ICCV 2015,
"Unsupervised visual representation learning by context prediction",
https://arxiv.org/abs/1505.05192).

From each image a centre patch and one of its 8 neighbours are cut; the network sees both and
classifies where the neighbour lies relative to the centre. Geometry, per image:

- a 3 x 3 grid of square cells of side ``P = patch_size``, ``G = gap`` pixels apart, spans
  ``S = 3P + 2G`` pixels; its top-left corner ``(gy, gx)`` is uniform over the positions that
  keep every jittered patch inside the image, ``J <= gy <= H - S - J`` (likewise ``gx`` with
  ``W``), ``J = jitter``;
- cell ``(r, c)``, r and c in 0..2, has its top-left corner at ``(gy + r(P + G), gx + c(P + G))``;
  the centre patch is cell (1, 1), the neighbour is cell ``(1 + dr, 1 + dc)`` for a label drawn
  uniformly in 0..7, the 8 neighbours in row-major order::

      0 1 2        (dr, dc) = (-1, -1) (-1, 0) (-1, 1)
      3 . 4                   ( 0, -1)         ( 0, 1)
      5 6 7                   ( 1, -1) ( 1, 0) ( 1, 1)

- each of the two patches is moved by its own integer jitter, uniform in ``[-J, J]`` on each
  axis, so the neighbour's top-left corner minus the centre's is
  ``(dr, dc) * (P + G) + (e_r, e_c)`` with ``|e_r|, |e_c| <= 2J``.

The gap and the jitter keep the network from solving the task by continuing lines or textures
across the patch boundary (the paper's "Avoiding trivial solutions"). The paper used 96-pixel
patches, a 48-pixel gap and jitter up to 7 pixels on images resized to 150K-450K pixels; the
defaults here, patch 8, gap 2 and jitter 1, fit CIFAR-10's 32 x 32 images
(3 * 8 + 2 * 2 + 2 * 1 = 30 <= 32).

Chromatic aberration lets a network locate a patch in the image from colour fringes alone; the
paper's two defences are ``chroma="drop"`` and ``chroma="project"`` (see :func:`context_pairs`).
"""

import functools
import math
from numbers import Integral

import jax
import jax.numpy as jnp

from ssl_jax.augment._batch import check_batch, check_size

__all__ = ["CHROMA_MODES", "GREEN_MAGENTA_AXIS", "NEIGHBOR_OFFSETS", "context_pairs"]

NEIGHBOR_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
"""``(dr, dc)`` of the neighbour cell relative to the centre cell, indexed by label."""

GREEN_MAGENTA_AXIS = tuple(v / math.sqrt(6.0) for v in (-1.0, 2.0, -1.0))
"""The unit RGB vector ``a = [-1, 2, -1] / sqrt(6)`` that ``chroma="project"`` removes."""

CHROMA_MODES = ("none", "drop", "project")

_DROP_NOISE_FRACTION = 0.01


def _check_nonnegative_int(value: int, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0; got {value!r}.")
    return int(value)


def _drop_channels(patches: jax.Array, keep: jax.Array, key: jax.Array) -> jax.Array:
    """Keeps channel ``keep[i]`` of each (P, P, C) patch ``i``; the others become Gaussian noise
    N(mean, (std / 100)^2), with mean and std the kept channel's over the patch."""
    is_kept = jnp.arange(patches.shape[-1]) == keep[..., None, None, None]
    kept_mean = jnp.mean(patches, axis=(-3, -2, -1), where=is_kept, keepdims=True)
    kept_std = jnp.std(patches, axis=(-3, -2, -1), where=is_kept, keepdims=True)
    noise = jax.random.normal(key, patches.shape, patches.dtype)
    return jnp.where(is_kept, patches, kept_mean + noise * (_DROP_NOISE_FRACTION * kept_std))


def _project_out_green_magenta(patch: jax.Array) -> jax.Array:
    """Multiplies every pixel's RGB by ``B = I - a a^T`` with ``a`` the green-magenta unit axis."""
    axis = jnp.asarray(GREEN_MAGENTA_AXIS, patch.dtype)
    return patch - (patch @ axis)[..., None] * axis


def _context_pair_one(
    image: jax.Array,
    key: jax.Array,
    *,
    patch_size: int,
    gap: int,
    jitter: int,
    chroma: str,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    height, width, channels = image.shape
    span = 3 * patch_size + 2 * gap
    stride = patch_size + gap
    draw_key, noise_key = jax.random.split(key)
    # One randint call draws (grid_y, grid_x, label, 2 x 2 jitters, 2 kept channels), so the
    # geometry does not depend on `chroma` and there is less to compile.
    low = jnp.array([jitter, jitter, 0] + [-jitter] * 4 + [0, 0])
    high = jnp.array(
        [height - span - jitter + 1, width - span - jitter + 1, len(NEIGHBOR_OFFSETS)]
        + [jitter + 1] * 4
        + [channels] * 2
    )
    draws = jax.random.randint(draw_key, (9,), low, high)
    grid_corner, label, shifts, keep = draws[:2], draws[2], draws[3:7].reshape(2, 2), draws[7:]
    offsets = jnp.asarray(NEIGHBOR_OFFSETS, jnp.int32)[label]
    corners = grid_corner + stride * jnp.stack([jnp.ones(2, jnp.int32), 1 + offsets]) + shifts

    def cut(corner: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(
            image, (corner[0], corner[1], 0), (patch_size, patch_size, channels)
        )

    patches = jax.vmap(cut)(corners)
    if chroma == "drop":
        patches = _drop_channels(patches, keep, noise_key)
    elif chroma == "project":
        patches = _project_out_green_magenta(patches)
    centre, neighbor = patches[0], patches[1]
    return centre, neighbor, label.astype(jnp.int32)


def context_pairs(
    images: jax.typing.ArrayLike,
    key: jax.Array,
    *,
    patch_size: int = 8,
    gap: int = 2,
    jitter: int = 1,
    chroma: str = "none",
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One (centre, neighbour) patch pair per image and the neighbour's position label.

    (N, H, W, 3) -> ``center`` (N, P, P, 3), ``neighbor`` (N, P, P, 3), ``labels`` (N,) int32 in
    0..7, with ``P = patch_size``; the grid, label and jitter sampling are in the module
    docstring. Needs ``3 * patch_size + 2 * gap + 2 * jitter <= min(H, W)``. The geometry does
    not depend on ``chroma``: for one key, every mode cuts the same patches.

    ``chroma`` guards against chromatic-aberration shortcuts (the paper's "Avoiding trivial
    solutions"), applied to each patch independently:

    - ``"none"``: the patches as cut.
    - ``"drop"`` ("colour dropping"): one of the 3 channels, chosen uniformly, is kept; the other
      two are replaced by Gaussian noise of standard deviation ``std(kept) / 100`` around
      ``mean(kept)``, the kept channel's (population) statistics over the patch's pixels. The
      paper's images were mean-subtracted, so its zero-mean noise sat at the mean colour; here
      pixels are in [0, 1], and centring the noise on the kept channel's mean keeps the
      dropped channels at a plausible level without carrying any colour of their own.
    - ``"project"``: every pixel's RGB value ``x`` becomes ``B x`` with
      ``B = I - a a^T``, ``a = [-1, 2, -1] / sqrt(6)`` (the green-magenta axis), which removes the
      component along ``a`` and leaves the other two (grey and red-blue) unchanged: green and
      magenta are shifted toward grey. As in the paper, no mean colour is subtracted first, so
      a grey pixel is kept exactly. Values may leave [0, 1] (by at most 1/6).
    """
    images = check_batch(images)
    patch_size = check_size(patch_size, name="patch_size")
    gap = _check_nonnegative_int(gap, name="gap")
    jitter = _check_nonnegative_int(jitter, name="jitter")
    if chroma not in CHROMA_MODES:
        raise ValueError(f"chroma must be one of {CHROMA_MODES}; got {chroma!r}.")
    needed = 3 * patch_size + 2 * gap + 2 * jitter
    height, width = images.shape[1], images.shape[2]
    if needed > min(height, width):
        raise ValueError(
            f"The 3 x 3 patch grid with its jitter needs 3 * patch_size + 2 * gap + 2 * jitter "
            f"= 3 * {patch_size} + 2 * {gap} + 2 * {jitter} = {needed} pixels, more than the "
            f"images' side min(H, W) = {min(height, width)}. Use a smaller patch_size, gap or "
            "jitter, or larger images."
        )
    fn = functools.partial(
        _context_pair_one, patch_size=patch_size, gap=gap, jitter=jitter, chroma=chroma
    )
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(fn)(images, keys)
