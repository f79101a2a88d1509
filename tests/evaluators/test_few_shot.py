import numpy as np
import pytest

from ssl_jax.evaluators import few_shot
from ssl_jax.evaluators.episodes import sample_episodes
from ssl_jax.evaluators.few_shot import (
    episode_accuracies,
    few_shot_accuracies,
    mean_and_ci95,
    prototype_logits,
)
from tests.evaluators.test_episodes import TEST_COUNTS, TRAIN_COUNTS, labels_of


def gaussian_features(labels, *, dim=16, spread=0.05, seed=0, centers_seed=7):
    centers = np.random.default_rng(centers_seed).normal(size=(labels.max() + 1, dim))
    noise = np.random.default_rng(seed).normal(size=(len(labels), dim))
    return (centers[labels] + spread * noise).astype(np.float32)


def test_too_few_images_or_classes_are_clear_errors():
    train_y, test_y = labels_of(TRAIN_COUNTS, 0), labels_of(TEST_COUNTS, 1)
    with pytest.raises(ValueError, match="class 5 has 6 train images, K=7 needs 7"):
        sample_episodes(train_y, test_y, ways=5, shots=7, queries=5, episodes=2, seed=0)
    with pytest.raises(ValueError, match=r"class 5 has 6 train images, K=6 needs 7 \(K support"):
        sample_episodes(train_y, None, ways=5, shots=6, queries=5, episodes=2, seed=0)
    with pytest.raises(ValueError, match="7-way episodes need 7 classes, but .* has 6"):
        sample_episodes(train_y, test_y, ways=7, shots=1, queries=5, episodes=2, seed=0)
    with pytest.raises(ValueError, match="class 6 has no test images"):
        sample_episodes(
            np.append(train_y, 6), test_y, ways=5, shots=1, queries=1, episodes=2, seed=0
        )
    with pytest.raises(ValueError, match="shots must be an int >= 1"):
        sample_episodes(train_y, test_y, ways=5, shots=0, queries=5, episodes=2, seed=0)
    x = np.ones((len(train_y), 4), np.float32)
    with pytest.raises(ValueError, match="episodes must be an int >= 2"):
        few_shot_accuracies(x, train_y, episodes=1)
    with pytest.raises(ValueError, match=r"classifiers \['knn'\]"):
        few_shot_accuracies(x, train_y, classifiers=("knn",))


def test_prototypes_are_cosine_to_normalised_class_means():
    rng = np.random.default_rng(0)
    support, query = rng.normal(size=(3, 4, 8)), rng.normal(size=(5, 8))
    unit = support / np.linalg.norm(support, axis=-1, keepdims=True)
    protos = unit.mean(axis=1)
    protos /= np.linalg.norm(protos, axis=-1, keepdims=True)
    expected = query / np.linalg.norm(query, axis=-1, keepdims=True) @ protos.T
    np.testing.assert_allclose(prototype_logits(support, query), expected, rtol=1e-5, atol=1e-6)


def test_confidence_interval_formula():
    mean, ci = mean_and_ci95([0.0, 1.0, 1.0, 0.0])
    assert mean == 0.5
    assert ci == pytest.approx(1.96 * np.sqrt(1 / 3) / 2)  # std with ddof=1 is sqrt(1/3)


def test_separable_features_are_perfect_and_unrelated_features_at_chance():
    train_y, test_y = labels_of(TRAIN_COUNTS, 0), labels_of(TEST_COUNTS, 1)
    train_x, test_x = gaussian_features(train_y, seed=0), gaussian_features(test_y, seed=1)
    kw = dict(ways=(5,), shots=(1,), queries=15, episodes=100)
    acc = few_shot_accuracies(train_x, train_y, test_x, test_y, **kw)
    assert acc == {
        "proto_5way_1shot": 100.0,
        "proto_5way_1shot_ci95": 0.0,
        "logreg_5way_1shot": 100.0,
        "logreg_5way_1shot_ci95": 0.0,
    }
    noise = np.random.default_rng(2).normal(size=(len(test_y), 16)).astype(np.float32)
    acc = few_shot_accuracies(train_x, train_y, noise, test_y, **kw)
    for name in ("proto", "logreg"):  # 5-way: chance is 20%; ~1,300 queries per setting
        assert 20 - 4 < acc[f"{name}_5way_1shot"] < 20 + 4, acc
        assert 0 < acc[f"{name}_5way_1shot_ci95"] < 5


def test_accuracies_are_the_mean_over_episodes_and_independent_of_chunking(monkeypatch):
    train_y, test_y = labels_of(TRAIN_COUNTS, 0), labels_of(TEST_COUNTS, 1)
    train_x = gaussian_features(train_y, spread=1.5, seed=0)
    test_x = gaussian_features(test_y, spread=1.5, seed=1)
    kw = dict(ways=(3,), shots=(2,), queries=5, episodes=7, seed=5)
    acc = few_shot_accuracies(train_x, train_y, test_x, test_y, **kw)
    ep = sample_episodes(train_y, test_y, ways=3, shots=2, queries=5, episodes=7, seed=(5, 3, 2))
    per_episode = episode_accuracies(train_x, test_x, ep.support, ep.query, ep.query_mask)
    for name in ("proto", "logreg"):
        mean, ci = mean_and_ci95(per_episode[name])
        assert acc[f"{name}_3way_2shot"] == pytest.approx(100 * mean, abs=1e-9)
        assert acc[f"{name}_3way_2shot_ci95"] == pytest.approx(100 * ci, abs=1e-9)
    assert 40 < acc["logreg_3way_2shot"] < 100  # neither trivial nor perfect
    monkeypatch.setattr(few_shot, "_CHUNK_FLOATS", 1)  # one episode per chunk
    assert few_shot_accuracies(train_x, train_y, test_x, test_y, **kw) == acc
    again = few_shot_accuracies(train_x, train_y, test_x, test_y, **{**kw, "seed": 6})
    assert again != acc


def test_a_setting_does_not_depend_on_the_others():
    train_y, test_y = labels_of(TRAIN_COUNTS, 0), labels_of(TEST_COUNTS, 1)
    train_x = gaussian_features(train_y, spread=1.5, seed=0)
    test_x = gaussian_features(test_y, spread=1.5, seed=1)
    kw = dict(queries=5, episodes=4, classifiers=("proto",))
    one = few_shot_accuracies(train_x, train_y, test_x, test_y, ways=(-1,), shots=(1,), **kw)
    both = few_shot_accuracies(train_x, train_y, test_x, test_y, ways=(4, -1), shots=(1,), **kw)
    assert set(both) == {f"proto_{w}way_1shot{s}" for w in (4, "all") for s in ("", "_ci95")}
    assert both["proto_allway_1shot"] == one["proto_allway_1shot"]
