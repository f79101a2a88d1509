"""Class-balanced label fractions and validation splits."""

import json

import numpy as np
import pytest

from ssl_jax.data import ArraySource, DataError
from ssl_jax.data.subset import (
    SubsetSource,
    check_saved_indices,
    class_balanced_subset,
    label_splits,
    labelled_subset,
    save_indices,
    save_val_split,
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


def _source():
    images = np.zeros((len(LABELS), 2, 2, 3), np.uint8)
    return ArraySource(images, LABELS)


def read_indices(path):
    with open(path) as f:
        return json.load(f)["indices"]


def test_labelled_subset_is_the_class_balanced_fraction_saved_as_label_subset(tmp_path):
    source = _source()
    sub, info = labelled_subset(source, 0.1, seed=3, workdir=str(tmp_path))
    want = class_balanced_subset(LABELS, 0.1, seed=3)
    np.testing.assert_array_equal(sub.indices, want)
    assert info["label_fraction"] == 0.1 and info["seed"] == 3
    assert read_indices(info["label_subset"]) == want.tolist()
    assert labelled_subset(source, 1.0, seed=3, workdir=str(tmp_path / "all")) == (
        source,
        {"label_fraction": 1.0},
    )
    assert not (tmp_path / "all").exists()


def test_the_val_split_is_saved_as_indices_into_the_training_split(tmp_path):
    source = _source()
    sub = SubsetSource(source, class_balanced_subset(LABELS, 0.5, seed=0))
    _, val = validation_split(source_labels(sub), 0.2, seed=0)
    path = save_val_split(str(tmp_path), val, sub, val_fraction=0.2)
    assert path.endswith("val_split.json")
    assert read_indices(path) == sub.indices[val].tolist()
    path = save_val_split(str(tmp_path / "whole"), val, source)
    assert read_indices(path) == val.tolist()  # positions of the whole split are its indices


def test_label_splits_are_disjoint_saved_and_checked_on_resume(tmp_path):
    source, kw = _source(), dict(label_fraction=0.5, seed=0, data_name="toy")
    train, val = label_splits(source, val_fraction=0.2, workdir=str(tmp_path), **kw)
    labelled = class_balanced_subset(LABELS, 0.5, seed=0)
    assert not set(train) & set(val) and sorted([*train, *val]) == labelled.tolist()
    assert read_indices(tmp_path / "label_subset.json") == labelled.tolist()
    assert read_indices(tmp_path / "val_split.json") == val.tolist()
    again = label_splits(source, val_fraction=0.2, workdir=str(tmp_path), **kw)
    np.testing.assert_array_equal(again[1], val)  # a resume draws and finds the same split
    with pytest.raises(DataError, match="val_split.json holds another subset"):
        label_splits(source, val_fraction=0.4, workdir=str(tmp_path), **kw)
    train, val = label_splits(source, val_fraction=0.0, workdir=str(tmp_path / "no_val"), **kw)
    assert len(val) == 0 and not (tmp_path / "no_val" / "val_split.json").exists()


def test_check_saved_indices_passes_without_a_file_and_names_a_changed_one(tmp_path):
    check_saved_indices(str(tmp_path), "val_split", np.arange(3))
    save_indices(str(tmp_path), "val_split", np.arange(3))
    check_saved_indices(str(tmp_path), "val_split", np.arange(3))
    with pytest.raises(DataError, match="another subset"):
        check_saved_indices(str(tmp_path), "val_split", np.arange(4))
