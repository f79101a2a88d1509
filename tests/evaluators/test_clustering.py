import itertools

import jax
import numpy as np
import pytest
from sklearn import metrics
from sklearn.cluster import KMeans as SklearnKMeans

from ssl_jax.evaluators.clustering import (
    adjusted_rand_index,
    cluster_scores,
    cluster_splits,
    contingency_table,
    hungarian_accuracy,
    kmeans,
    kmeans_plus_plus,
    lloyd,
    normalized_mutual_info,
)


def blobs(seed, *, k=5, per=40, dim=8, spread=0.05):
    rng = np.random.default_rng(seed)
    centers = 3.0 * rng.normal(size=(k, dim))
    labels = rng.permutation(np.repeat(np.arange(k), per))
    return (centers[labels] + spread * rng.normal(size=(len(labels), dim))).astype(
        np.float32
    ), labels


def test_a_hand_computed_case():
    """true {0,1}{2,3}, predicted {0,1}{2}{3}: contingency [[2,0,0],[0,1,1]]. Pairs: index 1,
    rows 2, columns 1, of C(4,2)=6: ARI = (1 - 2/6) / (3/2 - 2/6) = 4/7. H(true) = ln 2,
    H(pred) = 1.5 ln 2, I = ln 2 (pred determines true): NMI = ln 2 / (1.25 ln 2) = 0.8.
    Best matching: 2 + 1 of 4 right."""
    true, pred = [0, 0, 1, 1], [5, 5, 7, 9]
    np.testing.assert_array_equal(contingency_table(true, pred), [[2, 0, 0], [0, 1, 1]])
    assert adjusted_rand_index(true, pred) == pytest.approx(4 / 7)
    assert normalized_mutual_info(true, pred) == pytest.approx(0.8)
    assert hungarian_accuracy(true, pred) == 0.75


@pytest.mark.parametrize("seed", range(4))
def test_nmi_and_ari_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n, classes, clusters = [(50, 3, 3), (200, 10, 7), (31, 4, 12), (500, 2, 2)][seed]
    true = rng.integers(classes, size=n)
    pred = np.where(rng.random(n) < 0.6, true % clusters, rng.integers(clusters, size=n))
    assert normalized_mutual_info(true, pred) == pytest.approx(
        metrics.normalized_mutual_info_score(true, pred), abs=1e-12
    )
    assert adjusted_rand_index(true, pred) == pytest.approx(
        metrics.adjusted_rand_score(true, pred), abs=1e-12
    )


@pytest.mark.parametrize(
    "true, pred",
    [
        ([0, 0, 0, 0], [1, 1, 1, 1]),  # one cluster each: the same partition
        ([0, 1, 2, 3], [3, 2, 1, 0]),  # all singletons
        ([0, 0, 0, 0], [0, 1, 2, 3]),
        ([0, 0, 1, 1], [0, 1, 0, 1]),  # ARI -0.5
        ([0, 1, 1, 2], [0, 1, 1, 2]),
    ],
)
def test_edge_cases_match_scikit_learn(true, pred):
    assert normalized_mutual_info(true, pred) == pytest.approx(
        metrics.normalized_mutual_info_score(true, pred), abs=1e-12
    )
    assert adjusted_rand_index(true, pred) == pytest.approx(
        metrics.adjusted_rand_score(true, pred), abs=1e-12
    )


def test_scores_are_invariant_to_renaming_clusters():
    rng = np.random.default_rng(0)
    true = rng.integers(6, size=300)
    renamed = rng.permutation(6)[true] + 10  # a permuted labelling of the truth
    assert hungarian_accuracy(true, renamed) == 1.0
    assert normalized_mutual_info(true, renamed) == pytest.approx(1.0)
    assert adjusted_rand_index(true, renamed) == pytest.approx(1.0)


def test_hungarian_accuracy_is_the_best_matching():
    rng = np.random.default_rng(1)
    true, pred = rng.integers(4, size=60), rng.integers(4, size=60)
    best = max(np.mean(np.array(p)[pred] == true) for p in itertools.permutations(range(4)))
    assert hungarian_accuracy(true, pred) == pytest.approx(best)
    # More clusters than classes: the unmatched clusters' points count as wrong.
    assert hungarian_accuracy([0, 0, 1, 1], [0, 1, 2, 3]) == 0.5


def test_kmeans_finds_well_separated_clusters():
    x, labels = blobs(0)
    result = kmeans(x, 5, restarts=3, seed=0)
    assert result.centers.shape == (5, 8) and result.assignments.shape == (200,)
    assert hungarian_accuracy(labels, np.asarray(result.assignments)) == 1.0
    assert adjusted_rand_index(labels, np.asarray(result.assignments)) == pytest.approx(1.0)
    means = np.stack([x[labels == c].mean(axis=0) for c in range(5)])
    inertia = sum(np.sum((x[labels == c] - means[c]) ** 2) for c in range(5))
    assert float(result.inertia) == pytest.approx(inertia, rel=1e-4)


def test_kmeans_keeps_the_best_restart_and_is_seeded():
    x, _ = blobs(1, k=8, per=25, spread=1.5)  # overlapping: restarts differ
    keys = jax.random.split(jax.random.key(0), 6)  # kmeans(seed=0)'s restart keys
    one = jax.jit(lambda key: lloyd(x, kmeans_plus_plus(x, 8, key)).inertia)
    inertias = [float(one(key)) for key in keys]
    assert max(inertias) > min(inertias) * 1.001
    best = kmeans(x, 8, restarts=6, seed=0)
    assert float(best.inertia) == pytest.approx(min(inertias), rel=1e-6)
    again = kmeans(x, 8, restarts=6, seed=0)
    np.testing.assert_array_equal(best.assignments, again.assignments)
    reference = SklearnKMeans(8, n_init=10, random_state=0).fit(x).inertia_
    assert float(best.inertia) <= reference * 1.02


def test_lloyd_ends_at_a_fixed_point_and_kmeans_plus_plus_picks_points():
    x, _ = blobs(2, spread=1.0)
    seeds = np.asarray(kmeans_plus_plus(x, 5, jax.random.key(0)))
    assert all(np.any(np.all(x == s, axis=1)) for s in seeds)
    assert len(np.unique(seeds, axis=0)) == 5
    result = lloyd(x, seeds)
    assigned = np.asarray(result.assignments)
    means = np.stack([x[assigned == c].mean(axis=0) for c in range(5)])
    np.testing.assert_allclose(np.asarray(result.centers), means, rtol=1e-5, atol=1e-5)
    assert 1 <= int(result.iterations) < 300


def test_cluster_scores_normalise_and_detect_structure():
    x, labels = blobs(3)
    scaled = x * np.random.default_rng(0).uniform(0.5, 2.0, size=(len(x), 1))  # norms vary
    scores = cluster_scores(scaled, labels, restarts=2)
    assert scores["acc"] == scores["nmi"] == pytest.approx(100.0)
    noise = np.random.default_rng(1).normal(size=x.shape)
    chance = cluster_scores(noise, labels, restarts=2)
    assert chance["acc"] < 45 and chance["nmi"] < 15 and abs(chance["ari"]) < 10, chance


def test_bad_settings_are_clear_errors():
    x, _ = blobs(0, per=2)
    with pytest.raises(ValueError, match="k-means needs 1 <= k <= 10"):
        kmeans(x, 11)
    with pytest.raises(ValueError, match="cluster split='val' is not one of"):
        cluster_splits("val")
    with pytest.raises(ValueError, match="two 1-D arrays of one length"):
        contingency_table([0, 1], [0, 1, 1])
