"""Clustering of frozen features: k-means, scored against the labels it never saw.

Features are L2-normalised, then clustered by k-means (Lloyd's algorithm from k-means++
seeds, Arthur & Vassilvitskii 2007; ``restarts`` seeded restarts, the one with the lowest
inertia kept, as scikit-learn's ``n_init``) into ``k`` clusters, by default the number of
classes. The labels only score the result, with the three measures of the deep-clustering
literature (IIC, Ji et al. 2019; SCAN, Van Gansbeke et al. 2020):

- accuracy after the one-to-one matching of clusters to classes that maximises it
  (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``; with ``k`` != the number
  of classes the unmatched clusters or classes count as wrong);
- normalised mutual information, ``I(Y; C) / ((H(Y) + H(C)) / 2)`` (scikit-learn's default,
  arithmetic normalisation);
- adjusted Rand index (Hubert & Arabie 1985): the Rand index corrected for chance from the
  pair counts of the contingency table.

All three are invariant to renaming the clusters.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

from ssl_jax.evaluators.features import SplitFeatures
from ssl_jax.losses import l2_normalize

SPLITS = {"test": ("test",), "train": ("train",), "both": ("train", "test")}


class KMeans(NamedTuple):
    """``centers`` ``(k, D)``, ``assignments`` ``(n,)``, ``inertia`` (the sum of squared
    distances to the assigned centre) and the Lloyd ``iterations`` the kept restart ran."""

    centers: jax.Array
    assignments: jax.Array
    inertia: jax.Array
    iterations: jax.Array


def _squared_distances(x: jax.Array, centers: jax.Array) -> jax.Array:
    x2 = jnp.sum(x * x, axis=1, keepdims=True)
    c2 = jnp.sum(centers * centers, axis=1)
    return jnp.maximum(x2 - 2.0 * x @ centers.T + c2, 0.0)


def nearest_center(x: ArrayLike, centers: ArrayLike) -> jax.Array:
    """The index of the centre nearest to each row of ``x`` (squared Euclidean distance):
    ``(n,)`` int, as Lloyd's assignment step."""
    return jnp.argmin(_squared_distances(x, centers), axis=1)


def kmeans_plus_plus(x: ArrayLike, k: int, key: jax.Array) -> jax.Array:
    """``k`` seeds ``(k, D)`` among the rows of ``x``: the first uniform, each next one drawn
    with probability proportional to its squared distance to the nearest seed so far."""
    x = jnp.asarray(x, jnp.float32)
    first_key, key = jax.random.split(key)
    first = x[jax.random.randint(first_key, (), 0, x.shape[0])]
    centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    nearest = _squared_distances(x, first[None])[:, 0]

    def body(i, carry):
        centers, nearest = carry
        logits = jnp.where(jnp.sum(nearest) > 0, jnp.log(nearest), 0.0)  # all equal: uniform
        pick = x[jax.random.categorical(jax.random.fold_in(key, i), logits)]
        nearest = jnp.minimum(nearest, _squared_distances(x, pick[None])[:, 0])
        return centers.at[i].set(pick), nearest

    centers, _ = jax.lax.fori_loop(1, k, body, (centers, nearest))
    return centers


def lloyd(x: ArrayLike, centers: ArrayLike, *, iterations: int = 300) -> KMeans:
    """Lloyd's iterations from ``centers`` until no assignment changes (or ``iterations``).

    A cluster left empty keeps its centre.
    """
    x = jnp.asarray(x, jnp.float32)
    centers = jnp.asarray(centers, jnp.float32)
    k = centers.shape[0]

    def body(state):
        centers, previous, _, it = state
        labels = nearest_center(x, centers)
        sums = jax.ops.segment_sum(x, labels, num_segments=k)
        counts = jax.ops.segment_sum(jnp.ones(len(x), x.dtype), labels, num_segments=k)
        centers = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], centers)
        return centers, labels, jnp.any(labels != previous), it + 1

    def cond(state):
        return state[2] & (state[3] < iterations)

    start = (centers, jnp.full(len(x), -1, jnp.int32), jnp.array(True), jnp.array(0))
    centers, _, _, it = jax.lax.while_loop(cond, body, start)
    labels = nearest_center(x, centers)
    # From the differences, not the expanded distances (whose cancellation costs ~1e-4).
    inertia = jnp.sum(jnp.square(x - centers[labels]))
    return KMeans(centers, labels, inertia, it)


@partial(jax.jit, static_argnames=("k", "restarts", "iterations"))
def _kmeans(x, key, *, k, restarts, iterations):
    def one(key):
        return lloyd(x, kmeans_plus_plus(x, k, key), iterations=iterations)

    runs = jax.lax.map(one, jax.random.split(key, restarts))  # sequential: memory of one
    best = jnp.argmin(runs.inertia)
    return jax.tree.map(lambda a: a[best], runs)


def kmeans(
    x: ArrayLike, k: int, *, restarts: int = 10, iterations: int = 300, seed: int = 0
) -> KMeans:
    """k-means of the rows of ``x`` ``(n, D)``: ``restarts`` runs of :func:`lloyd` from
    :func:`kmeans_plus_plus` seeds (keys split from ``seed``), the lowest inertia kept."""
    x = jnp.asarray(x, jnp.float32)
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k-means needs 1 <= k <= {x.shape[0]} (the points), got k={k}.")
    if restarts < 1 or iterations < 1:
        raise ValueError(f"restarts and iterations must be >= 1, got {restarts}, {iterations}.")
    return _kmeans(x, jax.random.key(seed), k=k, restarts=restarts, iterations=iterations)


# --- Scores against the labels ---------------------------------------------------------------


def contingency_table(labels_true: ArrayLike, labels_pred: ArrayLike) -> np.ndarray:
    """``(classes, clusters)`` int64 counts of each (class, cluster) pair, over the values
    that occur (sorted)."""
    labels_true, labels_pred = np.asarray(labels_true), np.asarray(labels_pred)
    if labels_true.shape != labels_pred.shape or labels_true.ndim != 1:
        raise ValueError(
            f"labels must be two 1-D arrays of one length, got shapes {labels_true.shape} "
            f"and {labels_pred.shape}."
        )
    classes, rows = np.unique(labels_true, return_inverse=True)
    clusters, cols = np.unique(labels_pred, return_inverse=True)
    table = np.zeros((len(classes), len(clusters)), np.int64)
    np.add.at(table, (rows, cols), 1)
    return table


def hungarian_accuracy(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """The fraction of points right under the one-to-one cluster-to-class matching that
    maximises it (clusters or classes left unmatched count as wrong)."""
    table = contingency_table(labels_true, labels_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / max(table.sum(), 1))


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log(p)))


def normalized_mutual_info(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """``I(Y; C) / ((H(Y) + H(C)) / 2)`` in nats (scikit-learn's arithmetic NMI): 1 for
    two labellings that are the same up to renaming (two single clusters included), 0 when
    they share no information."""
    table = contingency_table(labels_true, labels_pred).astype(np.float64)
    if table.shape[0] == table.shape[1] <= 1:
        return 1.0
    n = table.sum()
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    i, j = np.nonzero(table)
    nij = table[i, j]
    mi = max(float(np.sum(nij / n * np.log(n * nij / (rows[i] * cols[j])))), 0.0)
    if mi == 0.0:
        return 0.0
    return mi / ((_entropy(rows) + _entropy(cols)) / 2.0)


def adjusted_rand_index(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Hubert & Arabie's ARI: ``(index - expected) / (max - expected)`` with ``index =
    sum_ij C(n_ij, 2)``, ``expected = sum_i C(a_i, 2) sum_j C(b_j, 2) / C(n, 2)`` and
    ``max = (sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2`` (``a``, ``b``: the table's row and
    column sums). 1 for identical partitions (up to renaming), about 0 for random ones."""
    table = contingency_table(labels_true, labels_pred).astype(np.float64)

    def pairs(m):
        return float(np.sum(m * (m - 1) / 2.0))

    index, a, b = pairs(table), pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    total = pairs(np.array([table.sum()]))
    expected = a * (b / total) if total else 0.0  # b == total: exactly a
    maximum = (a + b) / 2.0
    if maximum == expected:  # both all singletons or both one cluster: the same partition
        return 1.0
    return (index - expected) / (maximum - expected)


def cluster_scores(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    k: int = -1,
    restarts: int = 10,
    iterations: int = 300,
    seed: int = 0,
) -> dict:
    """k-means of the L2-normalised ``features`` into ``k`` clusters (-1: the number of
    classes in ``labels``), scored: ``{"acc", "nmi", "ari"}`` in % and the ``inertia``."""
    labels = np.asarray(labels)
    k = len(np.unique(labels)) if k == -1 else k
    result = kmeans(
        l2_normalize(jnp.asarray(features, jnp.float32)),
        k,
        restarts=restarts,
        iterations=iterations,
        seed=seed,
    )
    clusters = np.asarray(result.assignments)
    return {
        "acc": 100.0 * hungarian_accuracy(labels, clusters),
        "nmi": 100.0 * normalized_mutual_info(labels, clusters),
        "ari": 100.0 * adjusted_rand_index(labels, clusters),
        "inertia": float(result.inertia),
    }


def cluster_options(cfg: ml_collections.ConfigDict) -> dict:
    """The keyword arguments of :func:`cluster_scores` in a config section or entry (all but
    ``seed``), validated."""
    k, restarts, iterations = cfg.k, cfg.restarts, cfg.iterations
    if k != -1 and k < 1:
        raise ValueError(f"cluster k={k} must be >= 1, or -1 for the number of classes.")
    if restarts < 1 or iterations < 1:
        raise ValueError(f"cluster restarts={restarts} and iterations={iterations} must be >= 1.")
    return dict(k=k, restarts=restarts, iterations=iterations)


def cluster_splits(split: str) -> tuple[str, ...]:
    """The splits clustered for ``split``: ``test``, ``train`` or ``both`` (concatenated)."""
    if split not in SPLITS:
        raise ValueError(f"cluster split={split!r} is not one of {sorted(SPLITS)}.")
    return SPLITS[split]


class ClusterEvaluator:
    """Evaluator ``cluster``: :func:`cluster_scores` of the entry's ``split`` with its ``k``,
    ``restarts``, ``iterations`` and ``seed`` (``batch_size`` for the features)."""

    def __init__(self, entry: ml_collections.ConfigDict, features: SplitFeatures):
        self.cfg = entry
        self.features = features
        self.splits = cluster_splits(entry.split)
        for split in self.splits:
            features.source(split)  # a missing split fails when built
        cluster_options(entry)

    def __call__(self) -> dict:
        parts = [self.features(s, batch_size=self.cfg.batch_size) for s in self.splits]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        return cluster_scores(x, y, seed=self.cfg.seed, **cluster_options(self.cfg))
