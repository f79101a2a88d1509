"""The embedded sklearn digits source."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ssl_jax.data import make_digits_source


@pytest.fixture(scope="module")
def splits():
    return {s: make_digits_source(s) for s in ("train", "test")}


def test_shapes_dtypes_and_sizes(splits):
    for split, size in (("train", 1437), ("test", 360)):
        source = splits[split]
        images, labels = source.get(np.arange(len(source)))
        assert len(source) == size
        assert images.shape == (size, 32, 32, 3) and images.dtype == np.uint8
        assert labels.shape == (size,) and labels.dtype == np.int32
        assert source.num_classes == 10 and source.image_shape == (32, 32, 3)
        assert labels.min() == 0 and labels.max() == 9
        np.testing.assert_array_equal(images[..., 0], images[..., 2])
        assert images.max() > 200  # Real strokes, scaled from 0..16 to 0..255.


def test_split_is_stratified(splits):
    train = np.bincount(splits["train"].get(np.arange(1437))[1], minlength=10)
    test = np.bincount(splits["test"].get(np.arange(360))[1], minlength=10)
    assert np.all(np.abs(test - 0.2 * (train + test)) <= 1)


def test_native_size_values_and_split_partition_the_dataset():
    digits = load_digits()
    expected = np.round(digits.images * 255 / 16).astype(np.uint8)
    seen = []
    for split in ("train", "test"):
        source = make_digits_source(split, image_size=8)
        images, labels = source.get(np.arange(len(source)))
        seen += [(im[..., 0].tobytes(), int(lb)) for im, lb in zip(images, labels, strict=True)]
    full = [(im.tobytes(), int(lb)) for im, lb in zip(expected, digits.target, strict=True)]
    assert sorted(seen) == sorted(full)


def test_deterministic(splits):
    again = make_digits_source("train")
    idx = np.array([0, 5, 1436])
    for a, b in zip(again.get(idx), splits["train"].get(idx), strict=True):
        np.testing.assert_array_equal(a, b)
