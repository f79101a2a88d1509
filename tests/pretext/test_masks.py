import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.pretext import masks
from ssl_jax.pretext.masks import (
    apply_mask,
    central_block_mask,
    random_block_masks,
    random_region_masks,
)

block_masks = jax.jit(
    random_block_masks,
    static_argnums=(1, 2, 3),
    static_argnames=("num_blocks", "block_fraction", "max_area"),
)
region_masks = jax.jit(random_region_masks, static_argnums=(1, 2, 3), static_argnames=("area",))


def numpy_central_block(height, width, fraction):
    """The documented rule: floor(fraction * side) pixels, extra context row below / right."""
    h, w = math.floor(fraction * height + 1e-9), math.floor(fraction * width + 1e-9)
    top, left = (height - h) // 2, (width - w) // 2
    out = np.zeros((height, width), bool)
    out[top : top + h, left : left + w] = True
    return out


def test_central_block_is_pathaks_64x64_centre_of_128():
    m = central_block_mask(128, 128)
    assert m.shape == (128, 128) and m.dtype == jnp.bool_
    want = np.zeros((128, 128), bool)
    want[32:96, 32:96] = True  # train.lua's 1 + fineSize/4 ... fineSize/2 + fineSize/4, 1-based
    np.testing.assert_array_equal(m, want)
    assert m.sum() == 128 * 128 // 4


def test_central_block_rounding_for_odd_sizes():
    np.testing.assert_array_equal(
        np.argwhere(np.asarray(central_block_mask(7, 9)).any(1)).ravel(), [2, 3, 4]
    )
    np.testing.assert_array_equal(
        np.argwhere(np.asarray(central_block_mask(7, 9)).any(0)).ravel(), [2, 3, 4, 5]
    )
    for height, width, fraction in [(9, 9, 0.5), (10, 7, 0.3), (100, 100, 0.29), (5, 6, 1.0)]:
        np.testing.assert_array_equal(
            central_block_mask(height, width, fraction=fraction),
            numpy_central_block(height, width, fraction),
        )
    assert central_block_mask(100, 100, fraction=0.29).sum() == 29 * 29
    assert central_block_mask(5, 6, fraction=1.0).all()


def test_central_block_overlap_recipe_is_the_block_shrunk_by_4px():
    hole = np.asarray(central_block_mask(128, 128, fraction=(64 - 2 * 4) / 128))
    want = np.zeros((128, 128), bool)
    want[36:92, 36:92] = True
    np.testing.assert_array_equal(hole, want)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5, True, "0.5"])
def test_central_block_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        central_block_mask(8, 8, fraction=fraction)


def test_central_block_rejects_empty_block():
    with pytest.raises(ValueError, match="empty central block"):
        central_block_mask(8, 8, fraction=0.1)


def test_random_blocks_union_never_exceeds_max_area():
    n, height, width = 256, 16, 20
    got = np.asarray(
        block_masks(jax.random.key(0), n, height, width, num_blocks=4, block_fraction=0.25)
    )
    assert got.shape == (n, height, width) and got.dtype == bool
    area = got.sum(axis=(1, 2))
    assert np.all(area <= 0.25 * height * width)
    assert np.all(area >= 4 * 5)  # at least one whole 4x5 block
    assert np.any(area == 4 * 4 * 5)  # disjoint blocks reach the bound
    assert np.any(area < 4 * 4 * 5)  # and overlapping ones stay below it


def test_random_blocks_bound_holds_for_many_small_blocks():
    got = block_masks(jax.random.key(1), 64, 30, 30, num_blocks=9, block_fraction=0.1, max_area=0.1)
    area = np.asarray(got).sum(axis=(1, 2))
    assert np.all(area <= 0.1 * 30 * 30) and np.any(area == 9 * 3 * 3)


def test_single_random_block_is_one_rectangle_anywhere_inside():
    got = np.asarray(block_masks(jax.random.key(1), 300, 8, 8, num_blocks=1, block_fraction=0.5))
    for m in got:
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        assert len(rows) == 4 and len(cols) == 4 and m.sum() == 16
        assert rows[-1] - rows[0] == 3 and cols[-1] - cols[0] == 3
    tops = {int(np.argmax(m.any(1))) for m in got}
    lefts = {int(np.argmax(m.any(0))) for m in got}
    assert tops == lefts == set(range(5))  # every valid position, last one included


def test_random_blocks_are_seeded_and_differ_between_examples():
    a, b, c = (
        block_masks(jax.random.key(seed), 256, 16, 20, num_blocks=4, block_fraction=0.25)
        for seed in (2, 2, 3)
    )
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len({m.tobytes() for m in np.asarray(a)}) > 250


def test_random_blocks_reject_a_bound_they_could_break():
    with pytest.raises(ValueError, match="more than max_area=0.25"):
        random_block_masks(jax.random.key(0), 2, 16, 16, num_blocks=5, block_fraction=0.25)
    with pytest.raises(ValueError, match="empty blocks"):
        random_block_masks(jax.random.key(0), 2, 16, 16, num_blocks=1, block_fraction=0.05)
    with pytest.raises(ValueError, match="num_blocks"):
        random_block_masks(jax.random.key(0), 2, 16, 16, num_blocks=0, block_fraction=0.25)


@pytest.mark.parametrize("area", [0.25, 0.1])
def test_random_regions_remove_exactly_the_requested_area(area):
    n, height, width = 64, 24, 20
    got = np.asarray(region_masks(jax.random.key(4), n, height, width, area=area))
    assert got.shape == (n, height, width) and got.dtype == bool
    np.testing.assert_array_equal(got.sum(axis=(1, 2)), math.floor(area * height * width))


def test_random_regions_are_smooth_blobs_not_scattered_pixels():
    """Few mask/context boundaries between 4-neighbours: a random pixel mask of the same area
    has 2 p (1 - p) = 0.375 of its neighbour pairs disagreeing; a blob's boundary is short."""
    got = np.asarray(region_masks(jax.random.key(5), 64, 24, 20, area=0.25))
    disagree = np.concatenate(
        [(got[:, 1:] != got[:, :-1]).ravel(), (got[:, :, 1:] != got[:, :, :-1]).ravel()]
    ).mean()
    assert disagree < 0.15
    scattered = np.random.default_rng(0).permutation(got[0].ravel()).reshape(24, 20)
    assert (scattered[1:] != scattered[:-1]).mean() > 0.3


def test_random_regions_are_seeded_and_differ_between_examples():
    a, b, c = (region_masks(jax.random.key(seed), 64, 24, 20, area=0.25) for seed in (6, 6, 7))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len({m.tobytes() for m in np.asarray(a)}) == 64


def test_random_regions_reject_bad_arguments():
    with pytest.raises(ValueError, match="area"):
        random_region_masks(jax.random.key(0), 2, 8, 8, area=0.0)
    with pytest.raises(ValueError, match="removes no pixel"):
        random_region_masks(jax.random.key(0), 2, 8, 8, area=0.01)
    with pytest.raises(ValueError, match="grid_size"):
        random_region_masks(jax.random.key(0), 2, 8, 8, grid_size=1)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        random_region_masks(jax.random.key(0), 0, 8, 8)


def test_apply_mask_matches_numpy():
    rng = np.random.default_rng(8)
    images = rng.uniform(size=(3, 6, 5, 3)).astype(np.float32)
    mask = rng.uniform(size=(3, 6, 5)) < 0.3
    fill = np.array([117, 104, 123], np.float32) / 255
    want = images.copy()
    want[mask] = fill
    got = jax.jit(lambda x, m, f: apply_mask(x, m, fill=f))(images, mask, fill)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == jnp.float32


def test_apply_mask_with_a_shared_mask_and_scalar_fill():
    images = jnp.ones((2, 8, 8, 3), jnp.bfloat16)
    got = np.asarray(apply_mask(images, central_block_mask(8, 8), fill=0.5), np.float32)
    assert got.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(got[:, 2:6, 2:6], 0.5)
    assert got.sum() == 2 * 3 * (64 - 16 + 0.5 * 16)


def test_apply_mask_rejects_mismatched_inputs():
    images = jnp.zeros((2, 4, 4, 3))
    with pytest.raises(ValueError, match="mask must be bool"):
        apply_mask(images, jnp.zeros((2, 4, 5), bool), fill=0.0)
    with pytest.raises(ValueError, match="mask must be bool"):
        apply_mask(images, jnp.zeros((2, 4, 4)), fill=0.0)
    with pytest.raises(ValueError, match="one value per channel"):
        apply_mask(images, jnp.zeros((4, 4), bool), fill=jnp.zeros(2))
    with pytest.raises(ValueError, match="floating NHWC"):
        apply_mask(jnp.zeros((2, 4, 4, 3), jnp.uint8), jnp.zeros((4, 4), bool), fill=0)


def test_docstring_examples():
    assert doctest.testmod(masks, raise_on_error=True).attempted >= 2
