import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from ssl_jax.pretext.context import NEIGHBOR_OFFSETS, context_pairs

pairs = jax.jit(context_pairs, static_argnames=("patch_size", "gap", "jitter", "chroma"))


def coordinate_images(n, height, width):
    """Images whose channels 0 and 1 hold each pixel's row / height and column / width."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.stack([rows / height, cols / width, np.full(rows.shape, 0.5)], axis=-1)
    return jnp.broadcast_to(jnp.asarray(image, jnp.float32), (n, height, width, 3))


def corners(patches, height, width):
    """(top, left) of each coordinate-image patch, after checking it is a contiguous block."""
    patches = np.asarray(patches, np.float64)
    rows, cols = patches[..., 0] * height, patches[..., 1] * width
    np.testing.assert_allclose(rows, np.round(rows), atol=1e-4)
    np.testing.assert_allclose(cols, np.round(cols), atol=1e-4)
    rows, cols = np.round(rows).astype(int), np.round(cols).astype(int)
    top, left = rows[:, 0, 0], cols[:, 0, 0]
    steps = np.arange(patches.shape[1])
    np.testing.assert_array_equal(
        rows, np.broadcast_to(top[:, None, None] + steps[:, None], rows.shape)
    )
    np.testing.assert_array_equal(cols, np.broadcast_to(left[:, None, None] + steps, cols.shape))
    return np.stack([top, left], axis=-1)


# Side 24 = 3 * 6 + 2 * 1 + 2 * 2: the grid corner can only be (jitter, jitter), so each patch's
# jitter can be read off its position. Every test below with this shape shares one compilation
# per chroma mode.
N, SIDE, SIZE, GAP, JITTER = 128, 24, 6, 1, 2
STRIDE = SIZE + GAP
TIGHT = dict(patch_size=SIZE, gap=GAP, jitter=JITTER)


@pytest.fixture(scope="module")
def random_images():
    return jax.random.uniform(jax.random.key(7), (N, SIDE, SIDE, 3))


@pytest.fixture(scope="module")
def random_pairs(random_images):
    """Same key, every chroma mode: the geometry is shared, only the colours differ."""
    return {
        mode: pairs(random_images, jax.random.key(8), chroma=mode, **TIGHT)
        for mode in ("none", "drop", "project")
    }


def test_neighbor_offset_and_jitter_bounds():
    center, neighbor, labels = pairs(coordinate_images(N, SIDE, SIDE), jax.random.key(8), **TIGHT)
    assert center.shape == neighbor.shape == (N, SIZE, SIZE, 3)
    assert labels.shape == (N,) and labels.dtype == jnp.int32
    assert set(np.asarray(labels).tolist()) == set(range(8))
    c, n = corners(center, SIDE, SIDE), corners(neighbor, SIDE, SIDE)
    direction = np.asarray(NEIGHBOR_OFFSETS)[np.asarray(labels)]
    error = n - c - direction * STRIDE
    assert np.abs(error).max() == 2 * JITTER
    center_jitter = c - JITTER - STRIDE
    neighbor_jitter = n - JITTER - STRIDE * (1 + direction)
    np.testing.assert_array_equal(neighbor_jitter - center_jitter, error)
    for shifts in (center_jitter, neighbor_jitter):
        for axis in range(2):
            values = np.unique(shifts[:, axis])
            np.testing.assert_array_equal(values, np.arange(-JITTER, JITTER + 1))


def test_grid_position_without_jitter_and_uniform_labels():
    """Zero jitter on 12 x 14 images: the 11-pixel grid has 2 x 4 possible corners."""
    center, neighbor, labels = pairs(
        coordinate_images(2000, 12, 14), jax.random.key(2), patch_size=3, gap=1, jitter=0
    )
    c, n = corners(center, 12, 14), corners(neighbor, 12, 14)
    direction = np.asarray(NEIGHBOR_OFFSETS)[np.asarray(labels)]
    np.testing.assert_array_equal(n - c, direction * 4)
    grid_corner = c - 4
    np.testing.assert_array_equal(np.unique(grid_corner[:, 0]), [0, 1])
    np.testing.assert_array_equal(np.unique(grid_corner[:, 1]), [0, 1, 2, 3])
    counts = np.bincount(np.asarray(labels), minlength=8)
    assert counts.shape == (8,)
    assert scipy.stats.chisquare(counts).pvalue > 1e-3


def test_seeded(random_images, random_pairs):
    again = pairs(random_images, jax.random.key(8), chroma="drop", **TIGHT)
    other = pairs(random_images, jax.random.key(9), chroma="drop", **TIGHT)
    for x, y in zip(random_pairs["drop"], again, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(random_pairs["drop"][0], other[0])
    assert not np.array_equal(random_pairs["drop"][2], other[2])


def test_geometry_does_not_depend_on_chroma(random_pairs):
    for mode in ("drop", "project"):
        np.testing.assert_array_equal(random_pairs[mode][2], random_pairs["none"][2])


def test_chroma_drop_keeps_one_channel_and_scales_noise(random_pairs):
    kept_channels, ratios, noise = [], [], []
    for index in (0, 1):
        original = np.asarray(random_pairs["none"][index], np.float64)
        dropped = np.asarray(random_pairs["drop"][index], np.float64)
        for before, after in zip(original, dropped, strict=True):
            same = [np.array_equal(before[..., c], after[..., c]) for c in range(3)]
            assert sum(same) == 1, same
            keep = same.index(True)
            kept_channels.append(keep)
            others = np.delete(after, keep, axis=-1) - before[..., keep].mean()
            ratios.append(others.std() / (before[..., keep].std() / 100))
            noise.append(others / (before[..., keep].std() / 100))
    assert set(kept_channels) == {0, 1, 2}
    ratios = np.asarray(ratios)
    # 72 noise values per patch: a sample std within ~8% (one sigma) of the true one.
    assert 0.6 < ratios.min() and ratios.max() < 1.4
    assert abs(ratios.mean() - 1.0) < 0.03
    noise = np.concatenate([v.ravel() for v in noise])
    assert abs(noise.mean()) < 4 / math.sqrt(noise.size)
    assert scipy.stats.kstest(noise, "norm").pvalue > 1e-3


def test_chroma_project_removes_the_green_magenta_axis(random_pairs):
    axis = np.array([-1.0, 2.0, -1.0])
    projection = np.eye(3) - np.outer(axis, axis) / axis.dot(axis)
    for index in (0, 1):
        original = np.asarray(random_pairs["none"][index], np.float64)
        projected = np.asarray(random_pairs["project"][index], np.float64)
        np.testing.assert_allclose(projected @ axis, 0.0, atol=1e-6)
        np.testing.assert_allclose(projected, original @ projection.T, atol=1e-6)
        grey = original.mean(-1, keepdims=True)  # grey and red-blue components untouched
        np.testing.assert_allclose(projected.mean(-1, keepdims=True), grey, atol=1e-6)
        np.testing.assert_allclose(
            projected[..., 0] - projected[..., 2], original[..., 0] - original[..., 2], atol=1e-6
        )


def shapes(images, **kwargs):
    """context_pairs traced but not run: its argument checks happen while tracing."""
    fn = functools.partial(context_pairs, **kwargs)
    return jax.eval_shape(fn, images, jax.random.key(0))


def test_geometry_that_just_fits_works_and_one_more_pixel_raises():
    images = jnp.zeros((2, 16, 18, 3))
    center, _, _ = shapes(images, patch_size=4, gap=1, jitter=1)
    assert center.shape == (2, 4, 4, 3)
    with pytest.raises(ValueError, match="3 \\* patch_size \\+ 2 \\* gap \\+ 2 \\* jitter"):
        shapes(images, patch_size=4, gap=1, jitter=2)
    with pytest.raises(ValueError, match="min\\(H, W\\) = 16"):
        shapes(images, patch_size=5, gap=0, jitter=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(patch_size=0), "patch_size"),
        (dict(patch_size=2.5), "patch_size"),
        (dict(gap=-1), "gap"),
        (dict(jitter=1.5), "jitter"),
        (dict(chroma="gray"), "chroma must be one of"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        shapes(jnp.zeros((2, 32, 32, 3)), **kwargs)


def test_bad_images_raise():
    with pytest.raises(ValueError, match="RGB"):
        shapes(jnp.zeros((2, 32, 32, 1)))
    with pytest.raises(ValueError, match="floating"):
        shapes(jnp.zeros((2, 32, 32, 3), jnp.uint8))
