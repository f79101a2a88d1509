import numpy as np
import pytest

from ssl_jax.evaluators.linear import linear_probe, topk_accuracy

PROBE = dict(num_classes=4, epochs=20, batch_size=64, learning_rate=1e-2)


def gaussian_classes(seed, separation, n_train=256, n_test=128, dim=16, num_classes=4):
    rng = np.random.default_rng(seed)
    centers = separation * rng.normal(size=(num_classes, dim))
    train_y = rng.integers(num_classes, size=n_train)
    test_y = rng.integers(num_classes, size=n_test)
    train_x = centers[train_y] + rng.normal(size=(n_train, dim)) + 3.0
    test_x = centers[test_y] + rng.normal(size=(n_test, dim)) + 3.0
    return train_x.astype(np.float32), train_y, test_x.astype(np.float32), test_y


def test_topk_accuracy_hand_cases():
    logits = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5], [0.0, 0.1, 0.2]])
    labels = np.array([2, 0, 0, 2])
    acc = topk_accuracy(logits, labels, ks=(1, 2, 3))
    assert acc == pytest.approx({"top1": 50.0, "top2": 75.0, "top3": 100.0})


def test_topk_accuracy_ties_go_to_lower_index():
    logits = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    assert topk_accuracy(logits, np.array([0, 1]), ks=(1,)) == {"top1": 50.0}


def test_separable_data_is_learned():
    result = linear_probe(*gaussian_classes(0, separation=3.0), **PROBE)
    assert result["top1"] >= 99.0
    assert result["top5"] == 100.0
    assert result["train_top1"] >= 99.0
    assert result["final_train_loss"] < 0.3


def test_random_labels_stay_near_chance():
    train_x, train_y, test_x, test_y = gaussian_classes(1, separation=0.0)
    result = linear_probe(train_x, train_y, test_x, test_y, **PROBE)
    assert 10.0 <= result["top1"] <= 40.0  # chance is 25%
    assert result["final_train_loss"] > 0.8


def test_same_seed_same_result():
    data = gaussian_classes(2, separation=0.5)
    a = linear_probe(*data, seed=3, **PROBE)
    b = linear_probe(*data, seed=3, **PROBE)
    c = linear_probe(*data, seed=4, **PROBE)
    assert a == b
    assert c["final_train_loss"] != a["final_train_loss"]
