import numpy as np
import pytest

from ssl_jax.evaluators.features import FeatureBank
from ssl_jax.evaluators.knn import bank_accuracies, knn_accuracy, knn_scores
from ssl_jax.parallel import make_mesh


def knn_scores_reference(train_x, train_y, test_x, k, temperature, num_classes):
    """InstDisc/DINO weighted kNN in float64 with explicit loops over queries."""
    train = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    test = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    scores = np.zeros((len(test), num_classes))
    for i, q in enumerate(test):
        sims = train @ q
        for j in np.argsort(-sims)[:k]:
            scores[i, train_y[j]] += np.exp(sims[j] / temperature)
    return scores


def reference_accuracy(train_x, train_y, test_x, test_y, k, temperature, num_classes):
    scores = knn_scores_reference(train_x, train_y, test_x, k, temperature, num_classes)
    ranked = np.argsort(-scores, axis=1, kind="stable")
    top1 = 100.0 * np.mean(ranked[:, 0] == test_y)
    top5 = 100.0 * np.mean(np.any(ranked[:, :5] == test_y[:, None], axis=1))
    return top1, top5


def overlapping_clusters(seed, n_train=120, n_test=37, num_classes=7, dim=8, noise=1.2):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim))
    train_y = rng.integers(num_classes, size=n_train)
    test_y = rng.integers(num_classes, size=n_test)
    train_x = centers[train_y] + noise * rng.normal(size=(n_train, dim))
    test_x = centers[test_y] + noise * rng.normal(size=(n_test, dim))
    return train_x.astype(np.float32), train_y, test_x.astype(np.float32), test_y


@pytest.mark.parametrize("k, temperature", [(1, 0.07), (5, 0.07), (20, 0.5)])
def test_scores_match_numpy_reference(k, temperature):
    train_x, train_y, test_x, _ = overlapping_clusters(0)
    got = knn_scores(train_x, train_y, test_x, k=k, temperature=temperature, num_classes=7)
    expected = knn_scores_reference(train_x, train_y, test_x, k, temperature, 7)
    assert got.shape == (37, 7)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-6)


def test_scores_invariant_to_feature_scale():
    train_x, train_y, test_x, _ = overlapping_clusters(1)
    a = knn_scores(train_x, train_y, test_x, k=10, temperature=0.1, num_classes=7)
    b = knn_scores(5.0 * train_x, train_y, 0.2 * test_x, k=10, temperature=0.1, num_classes=7)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4)


def test_accuracy_matches_reference_and_chunking():
    train_x, train_y, test_x, test_y = overlapping_clusters(2)
    top1, top5 = reference_accuracy(train_x, train_y, test_x, test_y, 10, 0.07, 7)
    assert 30 < top1 < 95  # neither trivial nor perfect, so chunk bookkeeping shows
    whole = knn_accuracy(train_x, train_y, test_x, test_y, k=10, num_classes=7)
    chunked = knn_accuracy(train_x, train_y, test_x, test_y, k=10, num_classes=7, chunk=8)
    assert whole == pytest.approx({"top1": top1, "top5": top5})
    assert chunked == whole


def test_separated_clusters_are_perfect():
    rng = np.random.default_rng(3)
    centers = 10.0 * np.eye(16)[:6]
    train_y, test_y = rng.integers(6, size=300), rng.integers(6, size=100)
    train_x = centers[train_y] + 0.3 * rng.normal(size=(300, 16))
    test_x = centers[test_y] + 0.3 * rng.normal(size=(100, 16))
    result = knn_accuracy(train_x, train_y, test_x, test_y, k=20)
    assert result == {"top1": 100.0, "top5": 100.0}
    # k=1 so every query's vote is an independent random label: chance is 1/6.
    shuffled = knn_accuracy(train_x, rng.permutation(train_y), test_x, test_y, k=1)
    assert 5.0 < shuffled["top1"] < 35.0
    assert shuffled["top5"] < 100.0


def test_k_larger_than_train_set_raises():
    train_x, train_y, test_x, test_y = overlapping_clusters(4, n_train=10)
    with pytest.raises(ValueError, match="k=11 exceeds the 10 training examples"):
        knn_accuracy(train_x, train_y, test_x, test_y, k=11)


def test_a_k_beyond_the_memory_bank_is_an_error_not_a_clipped_column():
    from ssl_jax.evaluators.knn import knn_accuracies

    train_x, train_y, test_x, test_y = overlapping_clusters(4, n_train=10)
    with pytest.raises(ValueError, match=r"knn.k=\(5, 20\): kNN needs 1 <= k <= 10.*\[20\]"):
        knn_accuracies(
            (train_x, train_y), (test_x, test_y), ks=(5, 20), temperature=0.07, num_classes=4
        )


@pytest.mark.parametrize("devices", [1, 8])
def test_a_bank_split_over_the_devices_gives_the_reference_accuracies(devices):
    """Memory bank and queries split over 1 or 8 devices (a device holds 1/8 of the rows):
    the float64 reference's top-1 and top-5 for every k, padding excluded."""
    train_x, train_y, test_x, test_y = overlapping_clusters(2)
    mesh = make_mesh(devices)
    train = FeatureBank.from_host(train_x, train_y, batch_size=16, mesh=mesh)
    test = FeatureBank.from_host(test_x, test_y, batch_size=16, mesh=mesh)
    assert train.features.shape == (8, 16, 8) and train.count == 120  # 8 padded rows
    shard = train.features.addressable_shards[0].data
    assert shard.shape == (8, 16 // devices, 8)
    ks = (1, 10, 20)
    got = bank_accuracies(train, test, ks=ks, temperature=0.07, num_classes=7, mesh=mesh)
    for k in ks:
        top1, top5 = reference_accuracy(train_x, train_y, test_x, test_y, k, 0.07, 7)
        assert got[f"top1_k{k}"] == pytest.approx(top1) and got[f"top5_k{k}"] == pytest.approx(top5)
    with pytest.raises(ValueError, match="1 <= k <= 120"):
        bank_accuracies(train, test, ks=(121,), temperature=0.07, num_classes=7, mesh=mesh)
