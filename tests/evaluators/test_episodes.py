import numpy as np

from ssl_jax.evaluators.episodes import sample_episodes

# 6 classes; class 3 has 4 test images (queries clipped), class 5 only 6 train images.
TRAIN_COUNTS = [30, 25, 40, 20, 33, 6]
TEST_COUNTS = [20, 16, 18, 4, 25, 17]


def labels_of(counts, seed):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))


def test_episodes_have_the_right_shapes_and_classes_and_clip_queries():
    train_y, test_y = labels_of(TRAIN_COUNTS, 0), labels_of(TEST_COUNTS, 1)
    ep = sample_episodes(train_y, test_y, ways=5, shots=3, queries=15, episodes=40, seed=0)
    assert ep.classes.shape == (40, 5) and ep.support.shape == (40, 5, 3)
    assert ep.query.shape == ep.query_mask.shape == (40, 5, 15)
    for e in range(40):
        assert len(set(ep.classes[e])) == 5  # distinct classes
        assert len(set(ep.support[e].ravel())) == 15  # distinct support images
        assert np.all(train_y[ep.support[e]] == ep.classes[e][:, None])
        for i, c in enumerate(ep.classes[e]):
            q = ep.query[e, i][ep.query_mask[e, i]]
            assert len(q) == min(15, TEST_COUNTS[c]) == len(set(q))
            assert np.all(test_y[q] == c)
    assert set(np.unique(ep.classes)) == set(range(6))


def test_all_way_uses_every_class():
    train_y, test_y = labels_of(TRAIN_COUNTS, 0), labels_of(TEST_COUNTS, 1)
    ep = sample_episodes(train_y, test_y, ways=-1, shots=1, queries=2, episodes=5, seed=0)
    assert ep.classes.shape == (5, 6)
    assert all(sorted(row) == list(range(6)) for row in ep.classes)


def test_episodes_are_seeded():
    train_y, test_y = labels_of(TRAIN_COUNTS, 0), labels_of(TEST_COUNTS, 1)
    kw = dict(ways=5, shots=2, queries=5, episodes=10)
    a = sample_episodes(train_y, test_y, seed=3, **kw)
    b = sample_episodes(train_y, test_y, seed=3, **kw)
    c = sample_episodes(train_y, test_y, seed=4, **kw)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.support, c.support)


def test_queries_from_the_support_pool_are_disjoint_from_the_support():
    train_y = labels_of(TRAIN_COUNTS, 0)
    ep = sample_episodes(train_y, None, ways=4, shots=5, queries=15, episodes=50, seed=0)
    for e in range(50):
        support = set(ep.support[e].ravel())
        queries = ep.query[e][ep.query_mask[e]]
        assert not support & set(queries) and len(set(queries)) == len(queries)
        for i, c in enumerate(ep.classes[e]):
            assert ep.query_mask[e, i].sum() == min(15, TRAIN_COUNTS[c] - 5)
            assert np.all(train_y[ep.query[e, i][ep.query_mask[e, i]]] == c)


def test_every_image_is_equally_likely_to_be_support_or_query():
    """Floyd's sampling + shuffle: each of a class's 8 images is support with probability
    3/8 and query with probability 4/8 (same pool, 3 shots, up to 4 queries)."""
    labels = np.repeat([0, 1], [8, 8])
    ep = sample_episodes(labels, None, ways=2, shots=3, queries=4, episodes=4000, seed=0)
    support = np.bincount(ep.support.ravel(), minlength=16) / 4000
    query = np.bincount(ep.query[ep.query_mask], minlength=16) / 4000
    np.testing.assert_allclose(support, 3 / 8, atol=0.03)  # std ~0.008
    np.testing.assert_allclose(query, 4 / 8, atol=0.03)
