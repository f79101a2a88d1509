"""`get_source`: dispatch on data_config.name and errors for missing fields."""

import types

import ml_collections
import numpy as np
import pytest

from ssl_jax.data import SOURCES, ArraySource, DataError, FolderSource, TfdsSource, get_source


def config(**fields):
    return ml_collections.ConfigDict(fields)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError) as info:
        get_source(config(name="imagenett"), "train")
    message = str(info.value)
    assert "'imagenett'" in message
    for name in ("digits", "npz", "folder", "tfds"):
        assert name in message
    assert sorted(SOURCES) == ["digits", "folder", "jsonl", "npz", "records", "text", "tfds"]


def test_digits_from_a_minimal_config_object():
    source = get_source(types.SimpleNamespace(name="digits"), "test")
    assert isinstance(source, ArraySource) and len(source) == 360
    assert source.image_shape == (32, 32, 3)
    small = get_source(config(name="digits", image_size=16), "train")
    assert small.image_shape == (16, 16, 3) and len(small) == 1437


@pytest.mark.parametrize("name", ["npz", "folder"])
@pytest.mark.parametrize("path", [None, ""])
def test_path_is_required(name, path):
    fields = {"name": name} if path is None else {"name": name, "path": path}
    with pytest.raises(DataError, match=r"needs data.path.*--config.data.path="):
        get_source(config(**fields), "train")


def test_tfds_name_is_required():
    with pytest.raises(DataError, match=r"needs data.tfds_name.*--config.data.tfds_name="):
        get_source(config(name="tfds", tfds_name=""), "train")


def test_npz_and_folder_dispatch(tmp_path):
    np.savez(tmp_path / "train_0.npz", images=np.zeros((3, 8, 8, 3), np.uint8), labels=[0, 1, 2])
    source = get_source(config(name="npz", path=str(tmp_path), image_size=4), "train")
    assert len(source) == 3 and source.image_shape == (4, 4, 3) and source.num_classes == 3
    source = get_source(config(name="npz", path=str(tmp_path), num_classes=7), "train")
    assert source.num_classes == 7

    from PIL import Image

    for name in ("x", "y"):
        (tmp_path / "img" / name).mkdir(parents=True)
        Image.new("RGB", (5, 5)).save(tmp_path / "img" / name / "0.png")
    source = get_source(config(name="folder", path=str(tmp_path / "img")), "train")
    assert isinstance(source, FolderSource) and source.class_names == ["x", "y"]


def test_tfds_dispatch_with_splits():
    tfds = pytest.importorskip("tensorflow_datasets")
    cfg = config(
        name="tfds",
        tfds_name="cifar10",
        tfds_data_dir=None,
        image_size=None,
        train_split="train",
        test_split="train[:50%]",
    )
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        source = get_source(cfg, "test")
    assert isinstance(source, TfdsSource) and source.name == "tfds:cifar10/train[:50%]"
