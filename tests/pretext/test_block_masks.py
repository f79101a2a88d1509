"""iBOT's blockwise masks against a NumPy transcription of the authors' sampler, by statistics."""

import math
import random

import jax
import numpy as np
import pytest

from ssl_jax.pretext import block_masks, draw_mask_ratios

N = 2000


def np_ibot_mask(rng: random.Random, height, width, ratios=(0.0, 0.3), ratio_vars=(0.0, 0.2)):
    """The authors' ``ImageFolderMask.__getitem__`` (``pred_shape="block"``), in NumPy."""
    choices = [
        rng.uniform(r - v, r + v) if v > 0 else r for r, v in zip(ratios, ratio_vars, strict=True)
    ]
    high = rng.choice(choices) * height * width
    log_aspect = (math.log(0.3), math.log(1 / 0.3))
    mask = np.zeros((height, width), bool)
    count = 0
    while count < high:
        budget = high - count
        delta = 0
        for _ in range(10):
            low = (min(height, width) // 3) ** 2
            area = rng.uniform(low, budget)
            aspect = math.exp(rng.uniform(*log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if w < width and h < height:
                top, left = rng.randint(0, height - h), rng.randint(0, width - w)
                new = h * w - mask[top : top + h, left : left + w].sum()
                if 0 < new <= budget:
                    delta = int(new)
                    mask[top : top + h, left : left + w] = True
            if delta > 0:
                break
        if delta == 0:
            break
        count += delta
    return mask.reshape(-1)


def stats(masks, grid):
    """Unmasked share; mean and std of the masked fraction of masked images; blockiness (the
    share of masked patches whose right neighbour is masked)."""
    masks = np.asarray(masks)
    frac = masks.mean(1)
    on = masks[frac > 0].reshape(-1, *grid)
    right = (on[:, :, :-1] & on[:, :, 1:]).sum() / on[:, :, :-1].sum()
    return np.array([(frac == 0).mean(), frac[frac > 0].mean(), frac[frac > 0].std(), right])


@pytest.mark.parametrize(
    "grid",
    [(8, 8), pytest.param((14, 14), marks=pytest.mark.slow)],  # one compile each, ~5 s
)
def test_statistics_match_the_authors_sampler(grid):
    masks = np.asarray(jax.jit(block_masks, static_argnums=(1, 2))(jax.random.key(0), N, grid))
    assert masks.shape == (N, grid[0] * grid[1]) and masks.dtype == bool
    rng = random.Random(0)
    reference = np.stack([np_ibot_mask(rng, *grid) for _ in range(N)])
    ours, theirs = stats(masks, grid), stats(reference, grid)
    # Half unmasked; masked images near U(0.1, 0.5)'s mean 0.3, a little under (never above r).
    assert abs(theirs[0] - 0.5) < 0.05 and 0.25 < theirs[1] < 0.3
    # Tolerances: about 4 standard errors of the difference of two samples of N images.
    assert np.all(np.abs(ours - theirs) <= [0.065, 0.02, 0.015, 0.03]), (ours, theirs)
    # Blocks, not scattered patches: independent patches at ~0.28 would give ~0.28 here.
    assert ours[3] > 0.65
    # Statistics that can fail: a uniformly random mask of the same counts is not blocky.
    shuffled = np.stack([np.random.default_rng(i).permutation(m) for i, m in enumerate(masks)])
    assert stats(shuffled, grid)[3] < 0.5


@pytest.mark.slow  # a compile of its own, ~4 s
def test_fixed_ratio_never_exceeds_its_target():
    ratio = 0.4
    masks = np.asarray(
        block_masks(jax.random.key(3), 100, (8, 8), ratios=(ratio,), ratio_vars=(0.0,))
    )
    counts = masks.sum(1)
    assert counts.max() <= ratio * 64 and counts.min() > 0
    assert counts.mean() > 0.85 * ratio * 64


def test_ratios_are_drawn_per_image_as_get_pred_ratio():
    r = np.asarray(draw_mask_ratios(jax.random.key(1), 20_000))
    zero = r == 0.0
    assert abs(zero.mean() - 0.5) < 0.02
    assert r[~zero].min() >= 0.1 and r[~zero].max() <= 0.5
    np.testing.assert_allclose(np.quantile(r[~zero], [0.25, 0.5, 0.75]), [0.2, 0.3, 0.4], atol=0.01)


def test_bad_ratios_raise():
    with pytest.raises(ValueError, match="half-width <= ratio"):
        draw_mask_ratios(jax.random.key(0), 4, ratios=(0.1,), ratio_vars=(0.2,))
    with pytest.raises(ValueError, match="of one length"):
        draw_mask_ratios(jax.random.key(0), 4, ratios=(0.1, 0.3), ratio_vars=(0.0,))
    with pytest.raises(ValueError, match="aspect_ratio"):
        block_masks(jax.random.key(0), 4, (4, 4), aspect_ratio=(2.0, 1.0))
