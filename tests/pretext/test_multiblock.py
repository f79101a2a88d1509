"""I-JEPA's multi-block masks against a NumPy transcription of the authors' ``MaskCollator``
(facebookresearch/ijepa ``src/masks/multiblock.py``): the block-size rule exactly, the rest by
its statistics over thousands of images."""

import math

import jax
import numpy as np
import pytest

from ssl_jax.pretext.multiblock import block_size, multiblock_counts, multiblock_masks


def authors_block_size(u, scale, aspect_ratio, height, width):
    """``MaskCollator._sample_block_size`` with its one ``_rand`` ``u``, in plain Python."""
    mask_scale = scale[0] + u * (scale[1] - scale[0])
    max_keep = int(height * width * mask_scale)
    ratio = aspect_ratio[0] + u * (aspect_ratio[1] - aspect_ratio[0])
    h = int(round(math.sqrt(max_keep * ratio)))
    w = int(round(math.sqrt(max_keep / ratio)))
    while h >= height:
        h -= 1
    while w >= width:
        w -= 1
    return h, w


def authors_image(rng, height, width, t_size, c_size, *, npred=4, min_keep=10):
    """One image of ``MaskCollator.__call__``: target block masks ``(npred, H, W)``, the
    context mask ``(H, W)`` before truncation and the number of constraints dropped."""
    targets, complements = [], []
    for _ in range(npred):
        top, left = rng.integers(0, height - t_size[0]), rng.integers(0, width - t_size[1])
        m = np.zeros((height, width), bool)
        m[top : top + t_size[0], left : left + t_size[1]] = True
        targets.append(m)
        complements.append(~m)
    tries, timeout = 0, 20
    while True:
        top, left = rng.integers(0, height - c_size[0]), rng.integers(0, width - c_size[1])
        m = np.zeros((height, width), bool)
        m[top : top + c_size[0], left : left + c_size[1]] = True
        for k in range(max(npred - tries, 0)):
            m &= complements[k]
        if m.sum() > min_keep:
            return np.stack(targets), m, tries
        timeout -= 1
        if timeout == 0:
            tries, timeout = tries + 1, 20


def authors_batch_min(rng, batch, height, width):
    """The context length the authors' collator truncates a batch to (``min_keep_enc``)."""
    t_size = authors_block_size(rng.random(), (0.15, 0.2), (0.75, 1.5), height, width)
    c_size = authors_block_size(rng.random(), (0.85, 1.0), (1.0, 1.0), height, width)
    return min(authors_image(rng, height, width, t_size, c_size)[1].sum() for _ in range(batch))


def test_block_sizes_follow_the_authors_rule_for_one_uniform():
    u = np.random.default_rng(0).random(2000)
    for grid in ((14, 14), (8, 8), (16, 12)):
        for scale, ratio in (((0.15, 0.2), (0.75, 1.5)), ((0.85, 1.0), (1.0, 1.0))):
            want = np.array([authors_block_size(x, scale, ratio, *grid) for x in u])
            got = np.stack(block_size(u, scale, ratio, grid), axis=1)
            np.testing.assert_array_equal(got, want)
            jgot = np.stack(block_size(jax.numpy.asarray(u, np.float32), scale, ratio, grid), 1)
            assert np.mean(np.all(jgot == want, axis=1)) > 0.995  # float32 u at the steps


def test_static_counts_and_the_context_keep_the_authors_batch_minimum_gives():
    # 14x14 (ViT-H/14, 224 px): targets 30-40 patches, the context block always 13x13.
    assert multiblock_counts((14, 14)) == (math.floor(0.3 * 169), 30)
    assert multiblock_counts((8, 8), min_keep=4) == (math.floor(0.3 * 49), 9)
    rng = np.random.default_rng(1)
    mins = [authors_batch_min(rng, 16, 8, 8) for _ in range(40)]
    # The authors' median batch minimum for 16 images of an 8x8 grid, over the 7x7 block.
    assert abs(np.median(mins) / 49 - 0.3) < 0.035, np.median(mins)


def test_bad_settings_say_what_to_change():
    with pytest.raises(ValueError, match="set method.min_keep below 9"):
        multiblock_counts((8, 8))  # min_keep=10: the authors' sampler would loop for ever
    with pytest.raises(ValueError, match="raise method.context_keep"):
        multiblock_counts((8, 8), min_keep=4, context_keep=0.05)
    with pytest.raises(ValueError, match="target_scale"):
        multiblock_counts((8, 8), target_scale=(0.3, 0.2))


@pytest.fixture(scope="module")
def sampled():
    """4096 images of an 8x8 grid in 4 batches (min_keep 4, the CIFAR config's)."""
    fn = jax.jit(lambda k: multiblock_masks(k, 1024, (8, 8), min_keep=4))
    return [jax.device_get(fn(jax.random.key(i))) for i in range(4)]


def test_targets_are_the_row_major_heads_of_uniformly_placed_blocks(sampled):
    tops = []
    for masks in sampled:
        h, w = (int(v) for v in masks.target_size)
        assert (h, w) in ((3, 3), (4, 3))  # the two sizes of an 8x8 grid
        t = masks.targets  # (N, 4, 9)
        rows, cols = t // 8, t % 8
        top, left = rows.min(-1), cols.min(-1)
        box = [
            [r * 8 + c for r in range(a, a + h) for c in range(b, b + w)][:9]
            for a, b in zip(top.ravel(), left.ravel(), strict=True)
        ]
        np.testing.assert_array_equal(t.reshape(-1, 9), np.array(box))
        if h == 3:
            tops.append(top.ravel())
        assert top.max() == 8 - h - 1 and left.max() == 8 - w - 1  # randint's exclusive bound
    tops = np.concatenate(tops)
    freq = np.bincount(tops, minlength=5) / len(tops)
    np.testing.assert_allclose(freq, 0.2, atol=0.02)  # uniform over 0 .. H - h - 1


def test_context_avoids_the_targets_and_matches_the_authors_statistics(sampled):
    num_context = multiblock_counts((8, 8), min_keep=4)[0]
    rng = np.random.default_rng(2)
    for masks in sampled:
        t_size = tuple(int(v) for v in masks.target_size)
        c_size = tuple(int(v) for v in masks.context_size)
        assert c_size == (7, 7)
        ctx, tgt = masks.context, masks.targets
        assert np.all(np.diff(ctx, axis=1) > 0)  # ascending, distinct
        assert np.all(masks.context_count >= num_context)
        clean = masks.relaxed == 0
        # Without relaxation no context patch lies in any target block (full blocks rebuilt).
        rows, cols = tgt // 8, tgt % 8
        top, left = rows.min(-1), cols.min(-1)
        for i in np.flatnonzero(clean)[:200]:
            r, c = ctx[i] // 8, ctx[i] % 8
            for a, b in zip(top[i], left[i], strict=True):
                inside = (r >= a) & (r < a + t_size[0]) & (c >= b) & (c < b + t_size[1])
                assert not inside.any()
        # The authors' sampler with the static count as its acceptance bound: same statistics.
        ref = [
            authors_image(rng, 8, 8, t_size, c_size, min_keep=num_context - 1) for _ in range(1024)
        ]
        counts = np.array([m.sum() for _, m, _ in ref])
        np.testing.assert_allclose(masks.context_count.mean(), counts.mean(), rtol=0.03)
        heat = np.zeros(64)
        for i in range(len(ctx)):
            heat[ctx[i]] += 1
        ref_heat = np.zeros(64)
        for _, m, _ in ref:
            ref_heat[np.flatnonzero(m)[:num_context]] += 1
        np.testing.assert_allclose(heat / len(ctx), ref_heat / len(ref), atol=0.06)
        # Relaxation (targets let into the context) as often as the authors' at this bound.
        assert abs(clean.mean() - np.mean([r == 0 for *_, r in ref])) < 0.04
