"""Seeded N-way K-shot episodes drawn from labelled pools, as indices.

An episode draws N classes, K support images of each from the support pool (the train split)
and up to ``queries`` query images of each from the query pool (the test split, clipped to
what the class has; or, with the same pool for both, disjoint from the support, up to what is
left of the class after the K support images). Drawn with NumPy, from a seed.
"""

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from jax.typing import ArrayLike


class Episodes(NamedTuple):
    """``episodes`` N-way K-shot episodes with up to Q queries per class, as pool indices.

    ``classes`` ``(E, N)``: the class ids, way ``i`` of episode ``e`` is ``classes[e, i]``;
    ``support`` ``(E, N, K)``: indices into the support pool (images of that class);
    ``query`` ``(E, N, Q)``: indices into the query pool, valid where ``query_mask``
    ``(E, N, Q)`` is true (padding indices are 0).
    """

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray
    query_mask: np.ndarray


def _sample_positions(
    rng: np.random.Generator, pool: np.ndarray, take: np.ndarray, width: int
) -> np.ndarray:
    """``(R, width)`` int: row ``r`` starts with ``take[r]`` distinct positions of
    ``range(pool[r])`` in uniformly random order (the rest 0).

    Floyd's algorithm over all rows at once (``width`` steps, memory ``R * width``), then a
    shuffle of each row's valid part: the cost does not grow with the pool sizes.
    """
    rows = len(pool)
    out = np.zeros((rows, width), np.int64)
    for i in range(width):
        active = i < take
        top = np.where(active, pool - take + i, 0)  # Floyd: j = n - m + i, t ~ U{0..j}
        t = np.minimum((rng.random(rows) * (top + 1)).astype(np.int64), top)
        seen = (out[:, :i] == t[:, None]).any(axis=1)
        out[:, i] = np.where(active, np.where(seen, top, t), 0)
    keys = rng.random((rows, width))
    keys[np.arange(width) >= take[:, None]] = np.inf
    return np.take_along_axis(out, np.argsort(keys, axis=1), axis=1)


def _counts(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Images of each of ``classes`` (sorted, a superset of ``labels``) in ``labels``."""
    return np.bincount(np.searchsorted(classes, labels), minlength=len(classes))


def _class_index(labels: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, starts)``: ``order[starts[c] + j]`` is the j-th example of ``classes[c]``."""
    order = np.argsort(labels, kind="stable")
    return order, np.searchsorted(labels[order], classes)


def sample_episodes(
    support_labels: ArrayLike,
    query_labels: ArrayLike | None = None,
    *,
    ways: int,
    shots: int,
    queries: int,
    episodes: int,
    seed: int | Sequence[int],
    support_name: str = "train",
    query_name: str = "test",
) -> Episodes:
    """Seeded N-way (``ways``; -1 = every class) K-shot (``shots``) episodes.

    The classes are those of either pool; an episode's N classes are distinct, its support
    images distinct. ``query_labels=None`` draws queries from the support pool too,
    disjoint from the episode's support (a class then needs K + 1 images). Queries per class:
    ``queries``, clipped to what the class has. Raises ``ValueError`` (naming the pool by
    ``support_name`` / ``query_name``) when a class has fewer than K support images (or no
    query), or when N exceeds the number of classes.
    """
    support_labels = np.asarray(support_labels)
    same_pool = query_labels is None
    query_labels = support_labels if same_pool else np.asarray(query_labels)
    for name, value, low in (
        ("shots", shots, 1),
        ("queries", queries, 1),
        ("episodes", episodes, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"few-shot {name} must be an int >= {low}, got {value!r}.")
    if isinstance(ways, bool) or not isinstance(ways, int | np.integer):
        raise ValueError(f"few-shot ways must be an int (-1: all-way), got {ways!r}.")
    classes = np.union1d(support_labels, query_labels)
    if ways == -1:
        ways = len(classes)
    if not 2 <= ways <= len(classes):
        raise ValueError(
            f"{ways}-way episodes need {ways} classes, but the {support_name}/{query_name} "
            f"data has {len(classes)}; use ways between 2 and {len(classes)} (or -1 for "
            "all-way)."
        )
    support_count = _counts(support_labels, classes)
    need = shots + 1 if same_pool else shots
    if (short := np.flatnonzero(support_count < need)).size:
        c = short[0]
        extra = " (K support + at least 1 query from the same split)" if same_pool else ""
        raise ValueError(
            f"class {classes[c]} has {support_count[c]} {support_name} images, K={shots} needs "
            f"{need}{extra}; {len(short)} class(es) have too few. Lower the shots or use data "
            "with more images per class."
        )
    query_count = support_count if same_pool else _counts(query_labels, classes)
    if not same_pool and (empty := np.flatnonzero(query_count == 0)).size:
        raise ValueError(
            f"class {classes[empty[0]]} has no {query_name} images to query; every class of "
            f"the {support_name} split needs some in the {query_name} split."
        )

    rng = np.random.default_rng(seed)
    chosen = np.argsort(rng.random((episodes, len(classes))), axis=1)[:, :ways]
    rows = chosen.ravel()
    s_order, s_start = _class_index(support_labels, classes)
    if same_pool:
        take = np.minimum(queries, support_count[rows] - shots)
        width = shots + int(take.max())
        pos = _sample_positions(rng, support_count[rows], shots + take, width)
        support_pos, query_pos = pos[:, :shots], pos[:, shots:]
        q_order, q_start = s_order, s_start
    else:
        support_pos = _sample_positions(rng, support_count[rows], np.full(len(rows), shots), shots)
        take = np.minimum(queries, query_count[rows])
        query_pos = _sample_positions(rng, query_count[rows], take, int(take.max()))
        q_order, q_start = _class_index(query_labels, classes)
    mask = np.arange(query_pos.shape[1]) < take[:, None]
    support = s_order[s_start[rows, None] + support_pos]
    query = np.where(mask, q_order[q_start[rows, None] + query_pos], 0)
    shape = (episodes, ways, -1)
    return Episodes(
        classes=classes[chosen],
        support=support.reshape(shape),
        query=query.reshape(shape),
        query_mask=mask.reshape(shape),
    )
