"""What the downstream programs share (ssl_jax/programs/common.py): the data they read is the
export's dataset (its spec records it) unless ``config.data`` says otherwise; no pretraining
config is read, so an export copied on its own is enough."""

import logging

import pytest

from ssl_jax.data.identity import identify
from ssl_jax.programs import knn
from ssl_jax.programs.common import data_config
from tests.programs.tiny import DIGITS, copy_export, tiny_probe_config

CIFAR = {
    "name": "tfds",
    "tfds_name": "cifar10",
    "tfds_data_dir": "/pretraining/host/tfds",
    "train_split": "train",
    "test_split": "test",
}


def test_an_empty_data_name_means_the_exports_dataset():
    config = tiny_probe_config("run")
    data, origin = data_config(config, {"data": CIFAR})
    assert identify(data) == CIFAR and origin == "the export's dataset"
    assert data.batch_size == 64 and data.label_fraction == 1.0  # the program's own fields


def test_data_flags_change_the_exports_dataset_field_by_field():
    config = tiny_probe_config("run")
    config.data.tfds_data_dir = "/this/host/tfds"  # where the same data lives here
    config.data.image_size = 16
    data, origin = data_config(config, {"data": CIFAR})
    assert identify(data) == {**CIFAR, "tfds_data_dir": "/this/host/tfds", "image_size": 16}
    assert origin == "the export's dataset, with tfds_data_dir, image_size from config.data"
    config.data.name = "digits"  # another dataset: config.data alone
    data, origin = data_config(config, {"data": CIFAR})
    assert identify(data) == {**DIGITS, "image_size": 16} and origin == "config.data"


def test_an_export_that_does_not_record_its_dataset_needs_data_flags():
    config = tiny_probe_config("runs/old")
    with pytest.raises(ValueError, match=r"runs/old does not record .* --config.data.name="):
        data_config(config, {"data": None})
    config.data.name = "digits"
    assert data_config(config, {"data": None})[1] == "config.data"


def test_a_frozen_feature_program_needs_only_the_export(pretrained, tmp_path, caplog):
    export = copy_export(pretrained[0], tmp_path / "export")
    with caplog.at_level(logging.INFO, logger="ssl_jax.programs.common"):
        results = knn.run(tiny_probe_config(export), str(tmp_path / "knn"))
    assert results["program"] == "knn" and results["dataset"] == DIGITS
    assert results["num_train"] == 1437 and results["num_test"] == 360
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data: ")]
    assert lines == [
        "data: digits 8px (the export's dataset): 1437 train and 360 test images, 10 classes"
    ]
    old = copy_export(pretrained[0], tmp_path / "old", record_data=False)
    with pytest.raises(ValueError, match="does not record the dataset"):
        knn.run(tiny_probe_config(old), str(tmp_path / "old_knn"))
    config = tiny_probe_config(old)
    config.data.update(name="digits", image_size=8)
    assert knn.run(config, str(tmp_path / "old_knn"))["top1_k20"] == results["top1_k20"]
