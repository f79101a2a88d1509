"""Class-balanced label fractions and validation splits."""

import json

import numpy as np
import pytest

from ssl_jax.data import ArraySource
from ssl_jax.data.subset import (
    SubsetSource,
    class_balanced_subset,
    save_indices,
    source_labels,
    validation_split,
)

LABELS = np.repeat(np.arange(4), [100, 50, 10, 1])


def test_fraction_keeps_the_rounded_share_of_every_class_seeded():
    idx = class_balanced_subset(LABELS, 0.1, seed=0)
    counts = np.bincount(LABELS[idx], minlength=4)
    assert counts.tolist() == [10, 5, 1, 1]  # at least one image per class
    assert np.array_equal(idx, np.sort(idx)) and len(set(idx)) == len(idx)
    assert np.array_equal(idx, class_balanced_subset(LABELS, 0.1, seed=0))
    assert not np.array_equal(idx, class_balanced_subset(LABELS, 0.1, seed=1))
    assert np.array_equal(class_balanced_subset(LABELS, 1.0, seed=3), np.arange(len(LABELS)))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
            class_balanced_subset(LABELS, bad, seed=0)


def test_validation_split_is_disjoint_balanced_and_keeps_a_training_image_per_class():
    train, val = validation_split(LABELS, 0.2, seed=0)
    assert not set(train) & set(val) and len(train) + len(val) == len(LABELS)
    assert np.bincount(LABELS[val], minlength=4).tolist() == [20, 10, 2, 0]
    assert set(LABELS[train]) == {0, 1, 2, 3}


def test_subset_source_reads_through_and_indices_are_saved(tmp_path):
    images = np.arange(len(LABELS) * 12, dtype=np.uint8).reshape(len(LABELS), 2, 2, 3)
    source = ArraySource(images, LABELS)
    idx = class_balanced_subset(LABELS, 0.1, seed=0)
    sub = SubsetSource(source, idx)
    assert len(sub) == len(idx) and sub.num_classes == 4
    x, y = sub.get(np.array([0, 2]))
    np.testing.assert_array_equal(x, images[idx[[0, 2]]])
    np.testing.assert_array_equal(y, LABELS[idx[[0, 2]]])
    np.testing.assert_array_equal(source_labels(sub), LABELS[idx])
    path = save_indices(str(tmp_path), "label_subset", idx, fraction=0.1, seed=0)
    with open(path) as f:
        saved = json.load(f)
    assert saved["indices"] == idx.tolist() and saved["fraction"] == 0.1
    with pytest.raises(ValueError, match="Subset indices must lie"):
        SubsetSource(source, np.array([len(LABELS)]))
