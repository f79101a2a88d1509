import doctest
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.pretext import jigsaw
from ssl_jax.pretext.jigsaw import hamming_permutations, jigsaw_tiles, min_hamming_distance


def hamming(p, q):
    return sum(a != b for a, b in zip(p, q, strict=True))


def brute_force_min_distance(perms):
    return min(hamming(p, q) for p, q in itertools.combinations(perms.tolist(), 2))


def reference_greedy(num, num_tiles, seed):
    """The documented greedy max-min selection, written plainly over all candidates."""
    candidates = list(itertools.permutations(range(num_tiles)))
    chosen = [int(np.random.default_rng(seed).integers(len(candidates)))]
    for _ in range(num - 1):
        dists = [[hamming(p, candidates[q]) for q in chosen] for p in candidates]
        keys = [(min(d), sum(d), -i) for i, d in enumerate(dists)]
        chosen.append(-max(keys)[2])
    return np.array([candidates[i] for i in chosen])


@pytest.fixture(scope="module")
def perms100():
    return hamming_permutations(100)


def test_hamming_permutations_valid_distinct_and_seeded(perms100):
    assert perms100.shape == (100, 9) and np.issubdtype(perms100.dtype, np.integer)
    np.testing.assert_array_equal(np.sort(perms100, axis=1), np.tile(np.arange(9), (100, 1)))
    assert len(np.unique(perms100, axis=0)) == 100
    np.testing.assert_array_equal(hamming_permutations(100), perms100)
    assert not np.array_equal(hamming_permutations(100, seed=1), perms100)


def test_hamming_permutations_min_distance_regression(perms100):
    """Measured 6 for num=100 of 9 tiles (a random set of 100 has minimum 1 or 2)."""
    assert min_hamming_distance(perms100) >= 6
    assert min_hamming_distance(hamming_permutations(100, seed=3)) >= 6


@pytest.mark.parametrize("num, seed", [(7, 0), (24, 5)])
def test_hamming_permutations_match_plain_greedy(num, seed):
    np.testing.assert_array_equal(
        hamming_permutations(num, num_tiles=4, seed=seed), reference_greedy(num, 4, seed)
    )


def test_min_hamming_distance_matches_brute_force(perms100):
    rng = np.random.default_rng(0)
    cases = [
        perms100[:40],
        np.stack([rng.permutation(9) for _ in range(30)]),
        np.stack([rng.permutation(4) for _ in range(10)]),
        np.concatenate([perms100[:5], perms100[2:3]]),  # a duplicate row: distance 0
        np.array([[0, 1, 2, 3], [1, 0, 2, 3]]),
    ]
    for perms in cases:
        assert min_hamming_distance(perms) == brute_force_min_distance(perms)
    assert min_hamming_distance(cases[3]) == 0


def test_min_hamming_distance_across_blocks():
    """Enough rows that the pairwise comparison is done in several blocks."""
    rng = np.random.default_rng(1)
    perms = np.stack([rng.permutation(9) for _ in range(1500)])
    d = (perms[:, None, :] != perms[None, :, :]).sum(-1) + 10 * np.eye(1500, dtype=int)
    assert min_hamming_distance(perms) == d.min()
    perms[1400] = perms[10]
    assert min_hamming_distance(perms) == 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: hamming_permutations(25, num_tiles=4), "num must be"),
        (lambda: hamming_permutations(0), "num must be"),
        (lambda: hamming_permutations(10, num_tiles=8), "perfect square"),
        (lambda: hamming_permutations(10, num_tiles=16), "at most 9"),
        (lambda: min_hamming_distance(np.arange(9)[None]), "num >= 2"),
    ],
)
def test_hamming_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def coordinate_images(n, height, width):
    """Channels 0 and 1 hold each pixel's row / height and column / width."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.stack([rows / height, cols / width, np.full(rows.shape, 0.25)], axis=-1)
    return jnp.broadcast_to(jnp.asarray(image, jnp.float32), (n, height, width, 3))


# Cells of 10 x 12 pixels (the last 2 columns unused), tiles of 7: offsets 0..3 and 0..5. Every
# test below with this shape shares one compilation per value of `normalize`.
N, HEIGHT, WIDTH, TILE, NUM_PERMS = 128, 30, 38, 7, 10


@pytest.fixture(scope="module")
def tile_fns(perms100):
    """jigsaw_tiles under jit for normalize False and True, the permutations closed over."""
    return {
        normalize: jax.jit(
            functools.partial(
                jigsaw_tiles,
                permutations=perms100[:NUM_PERMS],
                tile_size=TILE,
                normalize=normalize,
            )
        )
        for normalize in (False, True)
    }


def test_tiles_come_from_the_permuted_cells(perms100, tile_fns):
    tiles, labels = tile_fns[False](coordinate_images(N, HEIGHT, WIDTH), jax.random.key(0))
    assert tiles.shape == (N, 9, TILE, TILE, 3)
    assert labels.shape == (N,) and labels.dtype == jnp.int32
    out = np.asarray(tiles, np.float64)
    rows, cols = out[..., 0] * HEIGHT, out[..., 1] * WIDTH
    np.testing.assert_allclose(rows, np.round(rows), atol=1e-4)
    np.testing.assert_allclose(cols, np.round(cols), atol=1e-4)
    rows, cols = np.round(rows).astype(int), np.round(cols).astype(int)
    top, left = rows[..., 0, 0], cols[..., 0, 0]
    steps = np.arange(TILE)
    np.testing.assert_array_equal(
        rows, np.broadcast_to(top[..., None, None] + steps[:, None], rows.shape)
    )
    np.testing.assert_array_equal(cols, np.broadcast_to(left[..., None, None] + steps, cols.shape))
    cells = perms100[np.asarray(labels)]  # (N, 9): the cell shown at each position
    np.testing.assert_array_equal(top // 10, cells // 3)
    np.testing.assert_array_equal(left // 12, cells % 3)
    np.testing.assert_array_equal(np.unique(top % 10), np.arange(4))
    np.testing.assert_array_equal(np.unique(left % 12), np.arange(6))


@pytest.fixture(scope="module")
def random_images():
    images = jax.random.uniform(jax.random.key(1), (N, HEIGHT, WIDTH, 3))
    return images.at[-1].set(0.5)  # constant tiles: zero variance


def test_labels_cover_the_range_and_seeded(tile_fns, random_images):
    fn = tile_fns[True]
    tiles, labels = fn(random_images, jax.random.key(2))
    assert set(np.asarray(labels).tolist()) == set(range(NUM_PERMS))
    again, again_labels = fn(random_images, jax.random.key(2))
    np.testing.assert_array_equal(tiles, again)
    np.testing.assert_array_equal(labels, again_labels)
    _, other = fn(random_images, jax.random.key(3))
    assert not np.array_equal(labels, other)


def test_normalize_standardizes_each_tile(tile_fns, random_images):
    raw, labels = tile_fns[False](random_images, jax.random.key(5))
    normed, normed_labels = tile_fns[True](random_images, jax.random.key(5))
    np.testing.assert_array_equal(labels, normed_labels)
    raw, normed = np.asarray(raw, np.float64), np.asarray(normed, np.float64)
    mean = raw.mean(axis=(2, 3, 4), keepdims=True)
    std = np.sqrt(raw.var(axis=(2, 3, 4), keepdims=True) + 1e-6)
    np.testing.assert_allclose(normed, (raw - mean) / std, atol=1e-4)
    np.testing.assert_allclose(normed[:-1].mean(axis=(2, 3, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(normed[:-1].std(axis=(2, 3, 4)), 1.0, atol=1e-3)
    np.testing.assert_array_equal(normed[-1], 0.0)


def test_grid_of_two():
    perms = hamming_permutations(6, num_tiles=4)
    fn = functools.partial(jigsaw_tiles, permutations=perms, grid=2, tile_size=4, normalize=False)
    tiles, labels = jax.jit(fn)(coordinate_images(3, 8, 8), jax.random.key(6))
    assert tiles.shape == (3, 4, 4, 4, 3)
    cells = perms[np.asarray(labels)]
    top = np.round(np.asarray(tiles)[:, :, 0, 0, 0] * 8).astype(int)
    left = np.round(np.asarray(tiles)[:, :, 0, 0, 1] * 8).astype(int)
    np.testing.assert_array_equal(top, (cells // 2) * 4)
    np.testing.assert_array_equal(left, (cells % 2) * 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tile_size=5), "tile_size must be at most"),
        (dict(tile_size=3, grid=2), "shape \\(num_permutations, grid \\* grid\\)"),
        (dict(tile_size=3, permutations=np.zeros((2, 9), int)), "permutation of range\\(9\\)"),
        (dict(tile_size=3, permutations=np.arange(9.0)[None]), "integers"),
        (dict(tile_size=0), "tile_size"),
        (dict(tile_size=3, grid=0), "grid"),
    ],
)
def test_jigsaw_bad_arguments_raise(perms100, kwargs, match):
    kwargs = {"permutations": perms100[:3], **kwargs}
    images = jnp.zeros((2, 12, 14, 3))
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(functools.partial(jigsaw_tiles, **kwargs), images, jax.random.key(0))


def test_traced_permutations_match_concrete(tile_fns, perms100, random_images):
    """Permutations passed as a jit argument (as a train state holds them) work the same."""
    fn = jax.jit(functools.partial(jigsaw_tiles, tile_size=TILE, normalize=True))
    traced = fn(random_images, jax.random.key(2), jnp.asarray(perms100[:NUM_PERMS]))
    concrete = tile_fns[True](random_images, jax.random.key(2))
    for x, y in zip(traced, concrete, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="shape"):
        jax.eval_shape(fn, random_images, jax.random.key(2), jnp.zeros((3, 4), jnp.int32))


def test_bad_images_raise(perms100):
    with pytest.raises(ValueError, match="floating NHWC"):
        jigsaw_tiles(jnp.zeros((12, 12, 3)), jax.random.key(0), perms100, tile_size=3)


def test_docstring_examples():
    failures, _ = doctest.testmod(jigsaw, verbose=False)
    assert failures == 0
