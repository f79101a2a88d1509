"""Blockwise patch masks for masked image modelling, as iBOT samples them (after BEiT).

iBOT (Zhou et al., 2022) masks the global crops' patch tokens with BEiT's (Bao et al., 2022)
blockwise sampler, with a prediction ratio drawn per image: in the authors' ``loader.py``
(``ImageFolderMask``, ``pred_shape="block"``) each image picks one entry ``(r_i, v_i)`` of
``pred_ratio`` / ``pred_ratio_var`` uniformly and draws its ratio ``r ~ U(r_i - v_i, r_i +
v_i)``; the released ViT recipes pass ``--pred_ratio 0 0.3 --pred_ratio_var 0 0.2``: half the
images are not masked at all, the other half get ``r ~ U(0.1, 0.5)`` (the paper's
appendix: "a prediction ratio r sampled uniformly from [0.1, 0.5] with a probability of 0.5").

Given ``r`` on an ``H x W`` patch grid the target is ``high = r H W`` masked patches. While
fewer are masked, up to 10 attempts draw a block: area ``a ~ U((min(H, W) // 3)^2, high -
count)``, aspect ratio ``rho = exp(U(log 0.3, log(1 / 0.3)))``, ``h = round(sqrt(a rho))``,
``w = round(sqrt(a / rho))``; a block with ``h < H`` and ``w < W`` is placed at a uniform
position (``top`` in ``0 … H - h``, ``left`` in ``0 … W - w``) and kept if it adds between 1
and ``high - count`` new patches; the first kept block ends the attempts. Ten failures end the
sampling, so an image ends with at most ``high`` masked patches (usually a few less).

This is the same loop under ``jax.lax.while_loop``, one image per ``vmap`` lane: masks have a
static shape ``(N, H * W)`` (row-major, ``True`` = masked), which
:class:`~ssl_jax.models.VisionTransformer`'s ``token_mask`` takes. Python's ``round`` rounds
halves to even, as ``jnp.round`` does.

References: Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022,
https://arxiv.org/abs/2111.07832 , code https://github.com/bytedance/ibot (``loader.py``);
Bao et al., "BEiT: BERT Pre-Training of Image Transformers", ICLR 2022 (``masking_generator.py``).
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = ["IBOT_RATIO_VARS", "IBOT_RATIOS", "block_masks", "draw_mask_ratios"]

# The released ViT recipes' --pred_ratio 0 0.3 --pred_ratio_var 0 0.2.
IBOT_RATIOS = (0.0, 0.3)
IBOT_RATIO_VARS = (0.0, 0.2)
ATTEMPTS = 10


def _check_ratios(ratios: Sequence[float], ratio_vars: Sequence[float]) -> tuple:
    ratios, ratio_vars = tuple(float(r) for r in ratios), tuple(float(v) for v in ratio_vars)
    if not ratios or len(ratios) != len(ratio_vars):
        raise ValueError(
            f"mask ratios {ratios} and their half-widths {ratio_vars} must be non-empty and of "
            "one length (iBOT: ratios (0.0, 0.3), half-widths (0.0, 0.2))."
        )
    for r, v in zip(ratios, ratio_vars, strict=True):
        if not (0.0 <= v <= r and r + v <= 1.0):
            raise ValueError(
                f"mask ratio {r} ± {v} must satisfy 0 <= half-width <= ratio and ratio + "
                "half-width <= 1 (the authors assert pred_ratio >= pred_ratio_var)."
            )
    return ratios, ratio_vars


def draw_mask_ratios(
    key: jax.Array,
    n: int,
    *,
    ratios: Sequence[float] = IBOT_RATIOS,
    ratio_vars: Sequence[float] = IBOT_RATIO_VARS,
) -> jax.Array:
    """``(n,)`` float32 mask ratios: per image an entry ``i`` uniformly, then ``U(r_i - v_i,
    r_i + v_i)`` (exactly ``r_i`` when ``v_i = 0``), as the authors' ``get_pred_ratio``."""
    ratios, ratio_vars = _check_ratios(ratios, ratio_vars)
    choice_key, uniform_key = jax.random.split(key)
    choice = jax.random.randint(choice_key, (n,), 0, len(ratios))
    r = jnp.asarray(ratios, jnp.float32)[choice]
    v = jnp.asarray(ratio_vars, jnp.float32)[choice]
    return r + v * jax.random.uniform(uniform_key, (n,), minval=-1.0, maxval=1.0)


def _one_mask(key: jax.Array, ratio: jax.Array, height: int, width: int, log_aspect) -> jax.Array:
    high = ratio * height * width
    low = float((min(height, width) // 3) ** 2)
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]

    def attempt(state):
        mask, count, key, tries, delta = state
        key, area_key, aspect_key, top_key, left_key = jax.random.split(key, 5)
        budget = high - count
        area = low + (budget - low) * jax.random.uniform(area_key)
        aspect = jnp.exp(jax.random.uniform(aspect_key, minval=log_aspect[0], maxval=log_aspect[1]))
        h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
        w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
        fits = (w < width) & (h < height)
        top = jax.random.randint(top_key, (), 0, jnp.maximum(height - h, 0) + 1)
        left = jax.random.randint(left_key, (), 0, jnp.maximum(width - w, 0) + 1)
        box = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
        new = jnp.sum(box & ~mask)
        keep = fits & (new > 0) & (new <= budget)
        mask = jnp.where(keep, mask | box, mask)
        return mask, count, key, tries + 1, jnp.where(keep, new, 0)

    def block(state):
        mask, count, key, _ = state
        mask, count, key, _, delta = jax.lax.while_loop(
            lambda s: (s[3] < ATTEMPTS) & (s[4] == 0), attempt, (mask, count, key, 0, 0)
        )
        return mask, count + delta, key, delta == 0

    init = (jnp.zeros((height, width), bool), jnp.int32(0), key, jnp.bool_(False))
    mask, *_ = jax.lax.while_loop(lambda s: (s[1] < high) & ~s[3], block, init)
    return mask.reshape(-1)


def block_masks(
    key: jax.Array,
    n: int,
    grid: tuple[int, int],
    *,
    ratios: Sequence[float] = IBOT_RATIOS,
    ratio_vars: Sequence[float] = IBOT_RATIO_VARS,
    aspect_ratio: tuple[float, float] = (0.3, 1 / 0.3),
) -> jax.Array:
    """``(n, H * W)`` bool blockwise masks on the ``grid = (H, W)`` patch grid, row-major.

    Each image's ratio comes from :func:`draw_mask_ratios` (``ratios``, ``ratio_vars``; the
    defaults are iBOT's released recipe: half the images unmasked, the rest ``U(0.1, 0.5)``),
    then blocks are added as BEiT's sampler does (module docstring) with aspect ratios
    log-uniform in ``aspect_ratio`` (iBOT's ``pred_aspect_ratio=(0.3, 1/0.3)``).
    ``ratios=(r,), ratio_vars=(0,)`` gives a fixed ratio. Jittable: shapes are static.
    """
    height, width = (int(g) for g in grid)
    if height < 1 or width < 1:
        raise ValueError(f"block_masks needs a patch grid of positive sides, got {grid}.")
    lo, hi = (float(a) for a in aspect_ratio)
    if not 0.0 < lo <= hi:
        raise ValueError(
            f"aspect_ratio must be (low, high) with 0 < low <= high, got {aspect_ratio}."
        )
    ratio_key, block_key = jax.random.split(key)
    ratio = draw_mask_ratios(ratio_key, n, ratios=ratios, ratio_vars=ratio_vars)
    log_aspect = (math.log(lo), math.log(hi))
    one = lambda k, r: _one_mask(k, r, height, width, log_aspect)  # noqa: E731
    return jax.vmap(one)(jax.random.split(block_key, n), ratio)
