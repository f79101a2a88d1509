"""SimMIM's masks by their statistics: the exact count per image, the block structure of the
mask patches, a uniform choice of mask patches, independent images."""

import jax
import numpy as np
import pytest

from ssl_jax.pretext import simmim_mask, simmim_mask_count


def coarse(masks, input_size, mask_patch_size, model_patch_size):
    """``(N, side, side)`` mask-patch masks, checking each mask patch is all in or all out."""
    n = len(masks)
    grid = input_size // model_patch_size
    scale = mask_patch_size // model_patch_size
    side = grid // scale
    blocks = np.asarray(masks).reshape(n, side, scale, side, scale)
    assert np.all(blocks.all(axis=(2, 4)) == blocks.any(axis=(2, 4)))  # whole blocks only
    return blocks[:, :, 0, :, 0]


def test_the_papers_setting_masks_exactly_60_percent_of_32px_blocks():
    # 192 px, 32 px mask patches (36 of them), ViT-B/16 patches: ceil(0.6 * 36) = 22 masked.
    masks = simmim_mask(jax.random.key(0), 64, 192, mask_patch_size=32, model_patch_size=16)
    assert masks.shape == (64, 144) and masks.dtype == bool
    blocks = coarse(masks, 192, 32, 16)
    assert simmim_mask_count(192, 32, 0.6) == 22
    np.testing.assert_array_equal(blocks.sum(axis=(1, 2)), 22)
    np.testing.assert_array_equal(np.asarray(masks).sum(axis=1), 22 * 4)


def test_every_mask_patch_is_chosen_uniformly_and_images_independently():
    n = 4000
    masks = simmim_mask(jax.random.key(1), n, 32, mask_patch_size=8, model_patch_size=4)
    blocks = coarse(masks, 32, 8, 4).reshape(n, 16)  # 16 mask patches, ceil(9.6) = 10 masked
    frequency = blocks.mean(axis=0)
    # Each mask patch is masked with probability 10/16; binomial std over n images.
    std = np.sqrt(10 / 16 * 6 / 16 / n)
    assert np.all(np.abs(frequency - 10 / 16) < 4.5 * std), frequency
    # Two given mask patches are both masked with probability (10*9)/(16*15) (no replacement).
    pair = np.mean(blocks[:, 0] & blocks[:, 5])
    assert abs(pair - 90 / 240) < 4.5 * np.sqrt(0.375 * 0.625 / n)
    # Consecutive images are independent draws: their overlap has the hypergeometric mean.
    overlap = np.mean(np.sum(blocks[:-1] & blocks[1:], axis=1))
    assert abs(overlap - 10 * 10 / 16) < 0.1
    assert len({row.tobytes() for row in blocks}) > n // 2  # not a few patterns repeated


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mask_patch_size=6, model_patch_size=4), "multiple of the model's patch size"),
        (dict(mask_patch_size=12, model_patch_size=4), "must divide the input size 32"),
        (dict(mask_patch_size=32, model_patch_size=4), "masks all 1 mask patches"),
        (dict(mask_ratio=1.0, mask_patch_size=8, model_patch_size=4), r"must be in \(0, 1\)"),
    ],
)
def test_bad_sizes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simmim_mask(jax.random.key(0), 2, 32, **kwargs)
