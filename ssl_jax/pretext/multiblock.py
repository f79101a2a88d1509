"""I-JEPA's multi-block masks (Assran et al., 2023): target blocks and one context block of
patches, sampled as the authors' ``MaskCollator`` (``src/masks/multiblock.py``) samples them.

Per batch, on a ``grid = (H, W)`` of patches:

1. **Block sizes, once per batch** (shared by every image and every target block): one uniform
   ``u`` gives both the scale ``s = s_min + u (s_max - s_min)`` and the aspect ratio
   ``a = a_min + u (a_max - a_min)`` (the authors draw one number for both), then
   ``k = int(H W s)``, ``h = round(sqrt(k a))``, ``w = round(sqrt(k / a))``, each lowered until
   it is below ``H`` (``W``). Targets: scale (0.15, 0.2), ratio (0.75, 1.5); the context block:
   a second ``u``, scale (0.85, 1.0), ratio 1.
2. **Target blocks** (``num_targets``, 4): per image and block, the top-left corner uniform over
   ``0 … H - h - 1`` by ``0 … W - w - 1`` (``torch.randint(0, H - h)``'s exclusive bound, kept).
3. **The context block** per image: a corner drawn the same way, its patches minus every target
   block's. A draw with too few patches left is redrawn; after 20 failed draws the last target
   block's constraint is dropped, and so on (the authors' ``tries`` / ``timeout``), so the last
   level is the whole block, unconstrained.
4. Indices are row-major patch positions, ascending (``torch.nonzero``'s order).

**Static shapes.** The authors' collator truncates every image's index list to the shortest in
its batch (``cm[:min_keep]``), so the number of tokens changes from batch to batch. Under
``jax.jit`` each count must be fixed when the step is compiled, so here both are fixed once,
from the grid and the scales (:func:`multiblock_counts`), and the authors' truncation (keep the
first indices in row-major order) is applied with that bound:

- targets keep ``num_target = min over u of h w``, the smallest block the size rule can give
  (every block of a batch has the same ``h w``, so the authors truncate nothing; here a batch
  whose blocks are larger loses their last row-major patches: 30–40 patches a block on a 14x14
  grid, kept 30);
- the context keeps ``num_context = floor(context_keep * smallest context block)`` tokens, the
  stand-in for the authors' batch minimum: ``context_keep=0.3`` is the median batch minimum of
  their collator measured by a NumPy transcription of it (0.30 of the 13x13 block for ViT-H/14 at
  224 px and their 128 images per GPU; 0.27–0.31 of the 7x7 block of an 8x8 grid for 256–16
  images). A context draw is valid when it keeps at least ``num_context`` patches (the authors:
  more than ``min_keep``), so no image has fewer than the static count. The stricter bound
  makes step 3's relaxation (target patches let into the context) more frequent than the
  authors' (never, in a NumPy run of their sampler): 0.5% of images on a 14x14 grid, 4–8% on
  an 8x8 grid at this default (a lower ``context_keep`` makes it rarer).

Reference: Assran, Duval, Misra, Bojanowski, Vincent, Rabbat, LeCun, Ballas, "Self-Supervised
Learning from Images with a Joint-Embedding Predictive Architecture", CVPR 2023.
https://arxiv.org/abs/2301.08243 ; code: https://github.com/facebookresearch/ijepa
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["MultiBlockMasks", "block_size", "multiblock_counts", "multiblock_masks"]

# The authors' sampler redraws a context block this many times before it drops a constraint.
TRIES_PER_LEVEL = 20
# u values at which the smallest possible block is looked for (the size rule is a step
# function of u with at most a few hundred steps on any grid in use).
_U_GRID = np.linspace(0.0, 1.0, 100_001)


class MultiBlockMasks(NamedTuple):
    """One batch's masks: ``context`` ``(N, num_context)`` and ``targets``
    ``(N, num_targets, num_target)`` int32 patch indices, row-major and ascending;
    ``target_size`` / ``context_size`` the batch's block ``(h, w)``; ``context_count`` ``(N,)``
    the context patches of each image before truncation; ``relaxed`` ``(N,)`` how many target
    constraints its context block dropped (0 = none, the paper's case)."""

    context: jax.Array
    targets: jax.Array
    target_size: jax.Array
    context_size: jax.Array
    context_count: jax.Array
    relaxed: jax.Array


def _check_range(value, name: str, low: float, high: float) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not low <= lo <= hi <= high:
        raise ValueError(
            f"{name} must be (min, max) with {low} <= min <= max <= {high}; got {value}."
        )
    return lo, hi


def block_size(u, scale, aspect_ratio, grid: tuple[int, int]):
    """The authors' ``_sample_block_size`` for a uniform ``u`` in [0, 1]: ``(h, w)`` ints
    (NumPy in, NumPy out; jnp in, jnp out), ``u`` giving both the scale and the ratio."""
    xp = jnp if isinstance(u, jax.Array) else np
    height, width = grid
    s = scale[0] + u * (scale[1] - scale[0])
    a = aspect_ratio[0] + u * (aspect_ratio[1] - aspect_ratio[0])
    keep = xp.floor(height * width * s)  # int() of a positive float
    h = xp.round(xp.sqrt(keep * a))  # half to even, as Python's round
    w = xp.round(xp.sqrt(keep / a))
    h = xp.minimum(h, height - 1).astype(xp.int32)
    w = xp.minimum(w, width - 1).astype(xp.int32)
    return h, w


def multiblock_counts(
    grid: tuple[int, int],
    *,
    target_scale=(0.15, 0.2),
    target_aspect_ratio=(0.75, 1.5),
    context_scale=(0.85, 1.0),
    context_keep: float = 0.3,
    min_keep: int = 10,
) -> tuple[int, int]:
    """The static ``(num_context, num_target)`` token counts for ``grid`` (module docstring);
    raises ``ValueError`` for settings the authors' sampler could not satisfy."""
    height, width = (int(g) for g in grid)
    if height < 2 or width < 2:
        raise ValueError(f"I-JEPA's masks need a patch grid of at least 2x2; got {grid}.")
    target_scale = _check_range(target_scale, "target_scale", 0.0, 1.0)
    target_aspect_ratio = _check_range(target_aspect_ratio, "target_aspect_ratio", 1e-6, 1e6)
    context_scale = _check_range(context_scale, "context_scale", 0.0, 1.0)
    if not 0.0 < context_keep <= 1.0:
        raise ValueError(f"context_keep must lie in (0, 1]; got {context_keep}.")
    h, w = block_size(_U_GRID, target_scale, target_aspect_ratio, (height, width))
    num_target = int(np.min(h * w))
    ch, cw = block_size(_U_GRID, context_scale, (1.0, 1.0), (height, width))
    context_area = int(np.min(ch * cw))
    if num_target <= min_keep or num_target < 1:
        raise ValueError(
            f"On a {height}x{width} patch grid the smallest target block has {num_target} "
            f"patches, not more than min_keep={min_keep} (the authors' sampler would never "
            f"accept it); set method.min_keep below {num_target} or raise target_scale."
        )
    num_context = math.floor(context_keep * context_area)
    if num_context <= min_keep or num_context < 1:
        raise ValueError(
            f"On a {height}x{width} patch grid the context keeps floor({context_keep} x "
            f"{context_area}) = {num_context} patches, not more than min_keep={min_keep}; "
            f"raise method.context_keep or lower method.min_keep below {num_context}."
        )
    return num_context, num_target


def _boxes(grid, tops, lefts, h, w) -> jax.Array:
    """Bool masks ``(..., H * W)``: ``True`` inside each ``h x w`` box at ``(tops, lefts)``."""
    rows = jnp.arange(grid[0])[:, None]
    cols = jnp.arange(grid[1])[None, :]
    tops, lefts = tops[..., None, None], lefts[..., None, None]
    inside = (rows >= tops) & (rows < tops + h) & (cols >= lefts) & (cols < lefts + w)
    return inside.reshape(*inside.shape[:-2], grid[0] * grid[1])


def _first(mask: jax.Array, count: int) -> jax.Array:
    """The first ``count`` ``True`` positions of each row of ``mask`` ``(..., L)``, ascending."""
    flat = mask.reshape(-1, mask.shape[-1])
    idx = jax.vmap(lambda m: jnp.nonzero(m, size=count)[0])(flat)
    return idx.astype(jnp.int32).reshape(*mask.shape[:-1], count)


def multiblock_masks(
    key: jax.Array,
    n: int,
    grid: tuple[int, int],
    *,
    num_targets: int = 4,
    target_scale=(0.15, 0.2),
    target_aspect_ratio=(0.75, 1.5),
    context_scale=(0.85, 1.0),
    context_keep: float = 0.3,
    min_keep: int = 10,
) -> MultiBlockMasks:
    """The masks of a batch of ``n`` images on a ``grid = (H, W)`` of patches (module
    docstring); jittable, the counts static (:func:`multiblock_counts`)."""
    if int(num_targets) < 1:
        raise ValueError(f"num_targets must be a positive int; got {num_targets}.")
    num_targets = int(num_targets)
    grid = (int(grid[0]), int(grid[1]))
    num_context, num_target = multiblock_counts(
        grid,
        target_scale=target_scale,
        target_aspect_ratio=target_aspect_ratio,
        context_scale=context_scale,
        context_keep=context_keep,
        min_keep=min_keep,
    )
    size_key, target_key, context_key = jax.random.split(key, 3)
    u_target, u_context = jax.random.uniform(size_key, (2,))
    th, tw = block_size(u_target, target_scale, target_aspect_ratio, grid)
    ch, cw = block_size(u_context, context_scale, (1.0, 1.0), grid)

    top_key, left_key = jax.random.split(target_key)
    tops = jax.random.randint(top_key, (n, num_targets), 0, grid[0] - th)
    lefts = jax.random.randint(left_key, (n, num_targets), 0, grid[1] - tw)
    target_masks = _boxes(grid, tops, lefts, th, tw)  # (n, M, L)

    # Allowed patches at relaxation level r: outside target blocks 0 .. M - r - 1 (the
    # authors apply acceptable_regions[:M - tries]); level M is unconstrained.
    outside = ~target_masks
    prefix = [jnp.ones_like(outside[:, 0])]
    for k in range(num_targets):
        prefix.append(prefix[-1] & outside[:, k])
    allowed = jnp.stack(prefix[::-1], axis=1)  # (n, M + 1, L), level r at index r
    levels = num_targets + 1
    top_key, left_key = jax.random.split(context_key)
    shape = (n, levels, TRIES_PER_LEVEL)
    ctops = jax.random.randint(top_key, shape, 0, grid[0] - ch)
    clefts = jax.random.randint(left_key, shape, 0, grid[1] - cw)
    candidates = _boxes(grid, ctops, clefts, ch, cw) & allowed[:, :, None]  # (n, M+1, T, L)
    counts = candidates.sum(-1)
    valid = (counts >= num_context) & (counts > min_keep)
    # The last level's candidates are whole blocks, always valid (multiblock_counts checks).
    choice = jnp.argmax(valid.reshape(n, -1), axis=1)
    chosen = jnp.take_along_axis(
        candidates.reshape(n, levels * TRIES_PER_LEVEL, -1), choice[:, None, None], axis=1
    )[:, 0]
    return MultiBlockMasks(
        context=_first(chosen, num_context),
        targets=_first(target_masks, num_target),
        target_size=jnp.stack([th, tw]),
        context_size=jnp.stack([ch, cw]),
        context_count=chosen.sum(-1).astype(jnp.int32),
        relaxed=(choice // TRIES_PER_LEVEL).astype(jnp.int32),
    )
