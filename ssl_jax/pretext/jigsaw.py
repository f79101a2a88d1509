"""Jigsaw puzzles (Noroozi and Favaro, ECCV 2016, "Unsupervised learning of visual
representations by solving jigsaw puzzles", https://arxiv.org/abs/1603.09246).

An image is cut into ``grid x grid`` tiles, which are shuffled by one permutation from a fixed
set; the network sees the shuffled tiles and classifies which permutation of the set was used.
The set is chosen so its permutations are far apart in Hamming distance (the number of
positions at which two permutations differ), which the paper found makes the task harder and
the features better. :func:`hamming_permutations` builds such a set once, in NumPy;
:func:`jigsaw_tiles` cuts and shuffles the tiles inside the jitted train step.
"""

import functools
import itertools
import math
from numbers import Integral

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from ssl_jax.augment._batch import check_float_batch, check_size

__all__ = ["hamming_permutations", "jigsaw_tiles", "min_hamming_distance"]

_MAX_ENUMERATED_TILES = 9
_NORMALIZE_EPS = 1e-6


@functools.cache
def _all_permutations(num_tiles: int) -> np.ndarray:
    """All num_tiles! permutations in lexicographic order, (num_tiles!, num_tiles) uint8."""
    perms = np.array(list(itertools.permutations(range(num_tiles))), dtype=np.uint8)
    perms.flags.writeable = False
    return perms


def _check_num_tiles(num_tiles: int) -> int:
    if isinstance(num_tiles, bool) or not isinstance(num_tiles, Integral) or num_tiles < 1:
        raise ValueError(f"num_tiles must be a positive integer; got {num_tiles!r}.")
    if math.isqrt(num_tiles) ** 2 != num_tiles:
        raise ValueError(
            f"num_tiles must be a perfect square (grid * grid tiles: 4, 9, ...); got {num_tiles}."
        )
    if num_tiles > _MAX_ENUMERATED_TILES:
        raise ValueError(
            f"num_tiles must be at most {_MAX_ENUMERATED_TILES} (a 3 x 3 grid): the search "
            f"enumerates all num_tiles! candidates, and {num_tiles}! = "
            f"{math.factorial(num_tiles):,} is too many; got {num_tiles}."
        )
    return int(num_tiles)


def hamming_permutations(num: int, *, num_tiles: int = 9, seed: int = 0) -> np.ndarray:
    """``num`` permutations of ``range(num_tiles)`` far apart in Hamming distance, (num,
    num_tiles) int32; deterministic given ``seed``.

    Greedy max-min selection over all ``num_tiles!`` candidates: the first permutation is drawn
    uniformly with ``np.random.default_rng(seed)``; each next one is a candidate ``p`` that
    maximises ``min_{q chosen} d(p, q)``, ``d(p, q) = #{i : p_i != q_i}``, ties broken by the
    largest ``sum_{q chosen} d(p, q)`` (the largest average distance), then the lowest index in
    lexicographic order. A running minimum and sum of distances per candidate are updated after
    each addition, so the cost is O(num * num_tiles! * num_tiles).

    The paper's Algorithm 1 ("maximal" set) picks by the average distance alone; picking by
    the minimum first keeps the closest pair of the set as far apart as the greedy allows,
    which is what makes two puzzles hard to confuse. Measured for 9 tiles (seeds 0 to 4 alike):
    ``num = 100`` has minimum distance 6 and average 8.08, ``num = 1000`` minimum 5 and average
    8.01; they take about 0.4 s and 1.1 s on one CPU core, 0.2 s of it enumerating the 9!
    candidates (cached after the first call).

    Examples:
      >>> perms = hamming_permutations(4, num_tiles=4)
      >>> perms.tolist()
      [[3, 1, 0, 2], [0, 2, 1, 3], [1, 3, 2, 0], [2, 0, 3, 1]]
      >>> min_hamming_distance(perms)
      4
    """
    num_tiles = _check_num_tiles(num_tiles)
    total = math.factorial(num_tiles)
    if isinstance(num, bool) or not isinstance(num, Integral) or not 1 <= num <= total:
        raise ValueError(
            f"num must be an integer in [1, num_tiles!] = [1, {total}] (there are only "
            f"{total} permutations of {num_tiles} tiles); got {num!r}."
        )
    candidates = _all_permutations(num_tiles)
    columns = np.ascontiguousarray(candidates.T)

    def distances(perm: np.ndarray) -> np.ndarray:
        d = np.zeros(total, np.int32)
        for position, value in enumerate(perm):
            d += columns[position] != value
        return d

    chosen = [int(np.random.default_rng(seed).integers(total))]
    min_distance = distances(candidates[chosen[0]])
    sum_distance = min_distance.copy()
    for _ in range(num - 1):
        best = np.flatnonzero(min_distance == min_distance.max())
        index = int(best[np.argmax(sum_distance[best])])
        chosen.append(index)
        d = distances(candidates[index])
        np.minimum(min_distance, d, out=min_distance)
        sum_distance += d
    return candidates[chosen].astype(np.int32)


def min_hamming_distance(perms: npt.ArrayLike) -> int:
    """The smallest Hamming distance between two rows of ``perms`` (num, num_tiles), num >= 2."""
    perms = np.asarray(perms)
    if perms.ndim != 2 or perms.shape[0] < 2:
        raise ValueError(
            f"perms must be a (num, num_tiles) array with num >= 2 rows; got shape {perms.shape}."
        )
    num, width = perms.shape
    block_rows = max(1, 2**24 // (num * width))  # about 16 MB of comparisons per block
    best = width
    for start in range(0, num, block_rows):
        block = perms[start : start + block_rows]
        d = (block[:, None, :] != perms[None, :, :]).sum(-1)
        rows = np.arange(block.shape[0])
        d[rows, start + rows] = width + 1
        best = min(best, int(d.min()))
    return best


def _check_permutations(permutations: npt.ArrayLike, num_tiles: int) -> jax.Array:
    """The permutations as an int32 array, after checking their shape (and, when concrete,
    that every row is a permutation of range(num_tiles))."""
    try:
        perms = np.asarray(permutations)
    except jax.errors.TracerArrayConversionError:
        perms = permutations  # traced (e.g. held in the train state): only the shape is known
    if perms.ndim != 2 or perms.shape[0] < 1 or perms.shape[1] != num_tiles:
        raise ValueError(
            f"permutations must have shape (num_permutations, grid * grid) = (K, {num_tiles}); "
            f"got shape {perms.shape}. Make them with hamming_permutations(K, "
            f"num_tiles={num_tiles})."
        )
    if not jnp.issubdtype(perms.dtype, jnp.integer):
        raise ValueError(f"permutations must be integers; got dtype {perms.dtype}.")
    if isinstance(perms, np.ndarray) and not np.array_equal(
        np.sort(perms, axis=1), np.broadcast_to(np.arange(num_tiles), perms.shape)
    ):
        raise ValueError(
            f"every row of permutations must be a permutation of range({num_tiles}); got {perms!r}."
        )
    return jnp.asarray(perms, jnp.int32)


def _standardize(tiles: jax.Array) -> jax.Array:
    """Each tile of (..., T, T, C) minus its mean over (T, T, C), over sqrt(variance + eps)."""
    mean = jnp.mean(tiles, axis=(-3, -2, -1), keepdims=True)
    var = jnp.var(tiles, axis=(-3, -2, -1), keepdims=True)
    return (tiles - mean) * jax.lax.rsqrt(var + _NORMALIZE_EPS)


def _jigsaw_one(
    image: jax.Array,
    key: jax.Array,
    *,
    permutations: jax.Array,
    grid: int,
    tile_size: int,
    normalize: bool,
) -> tuple[jax.Array, jax.Array]:
    cell_h, cell_w = image.shape[0] // grid, image.shape[1] // grid
    num_tiles = grid * grid
    # One randint call for the label and every tile's (row, column) offset.
    low = jnp.zeros(1 + 2 * num_tiles, jnp.int32)
    high = jnp.array(
        [permutations.shape[0]] + [cell_h - tile_size + 1, cell_w - tile_size + 1] * num_tiles
    )
    draws = jax.random.randint(key, (1 + 2 * num_tiles,), low, high)
    label, offsets = draws[0], draws[1:].reshape(num_tiles, 2)
    cells = jnp.arange(num_tiles)
    tops = (cells // grid) * cell_h + offsets[:, 0]
    lefts = (cells % grid) * cell_w + offsets[:, 1]

    def cut(top: jax.Array, left: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (top, left, 0), (tile_size, tile_size, image.shape[2]))

    tiles = jax.vmap(cut)(tops, lefts)[permutations[label]]
    if normalize:
        tiles = _standardize(tiles)
    return tiles, label.astype(jnp.int32)


def jigsaw_tiles(
    images: jax.typing.ArrayLike,
    key: jax.Array,
    permutations: npt.ArrayLike,
    *,
    grid: int = 3,
    tile_size: int,
    normalize: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Shuffled jigsaw tiles of each image and the index of the permutation used.

    (N, H, W, C) -> ``tiles`` (N, grid * grid, T, T, C), ``labels`` (N,) int32, ``T =
    tile_size``. Per image: the cells are the ``grid x grid`` blocks of ``H // grid`` by
    ``W // grid`` pixels (cell ``j`` in row-major order; leftover bottom and right pixels are
    unused); from each cell a ``T x T`` tile at an offset uniform in ``[0, H // grid - T] x [0,
    W // grid - T]``, drawn per tile, so the tiles' edges do not line up (the paper: 64-pixel
    tiles in 75-pixel cells of a 225-pixel crop); a label ``l`` uniform in ``[0, K)``, ``K =
    len(permutations)``; then ``tiles[n, i]`` is the tile of cell ``permutations[l][i]``.

    With ``normalize=True`` each tile is standardised on its own, ``(t - mean(t)) /
    sqrt(var(t) + 1e-6)`` over its pixels and channels, so the network cannot match tiles by
    their low-level statistics (the paper normalises each tile independently for the same
    reason).

    ``permutations``, (K, grid * grid) integers, usually from :func:`hamming_permutations`: a
    concrete array (closed over under jit) is checked row by row and baked into the compiled
    function as a constant; a traced one (e.g. kept in the train state) is only checked for
    shape and dtype, its rows must then be valid permutations.
    For CIFAR-10's 32 x 32 images, ``grid=3, tile_size=9`` keeps the paper's tile-to-cell ratio
    (64 / 75, cells of 10 pixels).
    """
    images = check_float_batch(images)
    grid = check_size(grid, name="grid")
    tile_size = check_size(tile_size, name="tile_size")
    perms = _check_permutations(permutations, grid * grid)
    cell = min(images.shape[1], images.shape[2]) // grid
    if tile_size > cell:
        raise ValueError(
            f"tile_size must be at most the cell side min(H, W) // grid = "
            f"min({images.shape[1]}, {images.shape[2]}) // {grid} = {cell}; got {tile_size}."
        )
    fn = functools.partial(
        _jigsaw_one,
        permutations=perms,
        grid=grid,
        tile_size=tile_size,
        normalize=bool(normalize),
    )
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(fn)(images, keys)
