"""The tfds source, on tfds's mock data (no download, no TensorFlow)."""

import numpy as np
import pytest

from ssl_jax.data import DataError, TfdsSource

tfds = pytest.importorskip("tensorflow_datasets")
if not hasattr(getattr(tfds, "testing", None), "mock_data"):
    pytest.skip("tfds.testing.mock_data is unavailable", allow_module_level=True)


@pytest.fixture
def mock_cifar10():
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def test_cifar10_shapes_dtypes_and_labels(mock_cifar10):
    source = TfdsSource("cifar10", "train")
    assert len(source) == 12 and source.num_classes == 10
    assert source.image_shape == (32, 32, 3) and source.name == "tfds:cifar10/train"
    images, labels = source.get(np.arange(12))
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < 10
    raw = tfds.data_source("cifar10", split="train")
    for i in (0, 7):
        np.testing.assert_array_equal(images[i], raw[i]["image"])
        assert labels[i] == raw[i]["label"]
    again, _ = source.get(np.array([7, 0]))
    np.testing.assert_array_equal(again, images[[7, 0]])


def test_image_size_resizes(mock_cifar10):
    source = TfdsSource("cifar10", "test", image_size=16)
    images, _ = source.get(np.array([0, 1]))
    assert source.image_shape == (16, 16, 3) and images.shape == (2, 16, 16, 3)


def test_split_mapping(mock_cifar10):
    assert TfdsSource("cifar10", "test").name == "tfds:cifar10/test"
    assert TfdsSource("cifar10", "test", test_split="train[:50%]").name.endswith("train[:50%]")
    assert TfdsSource("cifar10", "train", train_split="test").name == "tfds:cifar10/test"


def test_missing_feature_lists_the_features(mock_cifar10):
    with pytest.raises(DataError, match=r"no feature\(s\) \['fine_label'\].*'image', 'label'"):
        TfdsSource("cifar10", "train", label_key="fine_label")


def test_unprepared_dataset_explains_how_to_prepare_it(tmp_path):
    with pytest.raises(DataError) as info:
        TfdsSource("cifar10", "train", data_dir=str(tmp_path))
    message = str(info.value)
    assert "tfds build cifar10" in message and str(tmp_path) in message
    assert "tfds_data_dir" in message


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DataError, match="no dataset 'no_such_dataset_xyz'"):
        TfdsSource("no_such_dataset_xyz", "train", data_dir=str(tmp_path))
