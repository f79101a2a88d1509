"""The linear-probe program: label fractions, the raw-pixel baseline, the augmented protocol.

Runs on the shared tiny pretraining run (``pretrained`` fixture); test_leakage.py checks
that no protocol learns from the test split.
"""

import json
import os

import jax
import numpy as np
import pytest

from ssl_jax.augment import normalize
from ssl_jax.data.subset import class_balanced_subset
from ssl_jax.export import make_pixel_encode_fn, read_spec
from ssl_jax.metrics import read_metrics
from ssl_jax.programs import knn, linear_probe
from ssl_jax.programs.linear_probe import SGD_DEFAULTS, settings
from tests.programs.test_leakage import PALETTE, colour_images
from tests.programs.tiny import tiny_probe_config

SPLITS = {"train_split": "train", "test_split": "test"}


def colour_images_of(rng, classes):
    """8x8 images of ``classes`` (test_leakage.py's colours plus noise of std 5)."""
    noise = 5.0 * rng.normal(size=(len(classes), 8, 8, 3))
    return np.clip(PALETTE[classes][:, None, None, :] + noise, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def mislabelled_outside_subset(tmp_path_factory):
    """``(folder, subset)``: colour images whose labels are true only on the class-balanced
    10% subset that ``label_fraction=0.1, seed=0`` picks, ``(y + 1) % 10`` elsewhere."""
    folder = tmp_path_factory.mktemp("subset_data")
    rng = np.random.default_rng(0)
    labels = np.arange(1000) % 10
    subset = class_balanced_subset(labels, 0.1, seed=0)
    shown = (labels - 1) % 10  # the class each image shows: its label's predecessor...
    shown[subset] = labels[subset]  # ... except on the subset
    np.savez(folder / "train_00.npz", images=colour_images_of(rng, shown), labels=labels)
    test_images, test_labels = colour_images(rng, 200)
    np.savez(folder / "test_00.npz", images=test_images, labels=test_labels)
    return str(folder), subset


# Both protocols read the same subset source; the augmented one only adds time here.
@pytest.mark.parametrize("protocol", ["offline", pytest.param("augmented", marks=pytest.mark.slow)])
def test_the_label_fraction_subset_is_saved_and_the_only_training_data(
    pretrained, mislabelled_outside_subset, tmp_path, protocol
):
    folder, subset = mislabelled_outside_subset
    config = tiny_probe_config(pretrained[0], raw_pixels=True)
    config.data.name, config.data.path = "npz", folder
    config.data.label_fraction = 0.1
    config.probe.update(protocol=protocol, epochs=30, learning_rate=0.1)
    results = linear_probe.run(config, str(tmp_path))
    saved = json.loads((tmp_path / "label_subset.json").read_text())
    assert saved["indices"] == subset.tolist() and saved["count"] == 100
    assert saved["label_fraction"] == 0.1 and saved["seed"] == 0 and saved["split"] == "train"
    assert results["label_subset"] == str(tmp_path / "label_subset.json")
    assert results["num_train"] == 100 and results["label_fraction"] == 0.1
    assert results["program"] == "linear_probe" and results["protocol"] == protocol
    assert results["dataset"] == {"name": "npz", "path": folder, **SPLITS}
    # 90% of the training split is mislabelled (y + 1) % 10: only a probe fit on the subset
    # alone predicts the true test labels.
    assert results["top1"] > 90.0, results
    if protocol == "offline":
        val = json.loads((tmp_path / "val_split.json").read_text())["indices"]
        assert set(val) < set(subset.tolist()) and len(val) == results["num_val"] == 20


@pytest.mark.slow  # about 6 s
def test_the_raw_pixel_baseline_probes_the_encoders_input_flattened(pretrained, tmp_path):
    run_dir = pretrained[0]
    results = linear_probe.run(tiny_probe_config(run_dir, raw_pixels=True), str(tmp_path))
    assert results["encoder"] == "raw_pixels" and results["input_size"] == 8
    assert results["feature_dim"] == 8 * 8 * 3 and "step" not in results
    assert results["top1"] > 80.0  # 8x8 digits are nearly linearly separable in pixels
    spec = read_spec(run_dir)["input"]
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    expected = normalize(images / 255.0, mean=spec["mean"], std=spec["std"]).reshape(2, -1)
    got = jax.jit(make_pixel_encode_fn(spec))({}, images)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # about 5 s
def test_the_augmented_protocol_trains_on_views_and_logs_each_epoch(pretrained, tmp_path):
    config = tiny_probe_config(pretrained[0])
    config.probe.update(protocol="augmented", epochs=2)
    results = linear_probe.run(config, str(tmp_path))
    assert results["protocol"] == "augmented" and results["encoder"] == "pretrained"
    assert results["steps"] == 2 * (1437 // 64) and results["batch_size"] == 64
    assert 0.0 <= results["top1"] <= results["top5"] <= 100.0
    assert np.isfinite(results["final_train_loss"])
    assert results["settings"] == {
        "protocol": "augmented",
        "epochs": 2,
        "batch_size": 64,
        "learning_rate": 1e-2,
        "weight_decay": 0.0,
        "momentum": 0.9,
        "crop_scale": [0.08, 1.0],
        "flip_prob": 0.5,
        "head_norm": "batchnorm",
    }
    rows = read_metrics(os.path.join(tmp_path, "metrics.jsonl"))
    assert [(r["step"], r["epoch"]) for r in rows] == [(22, 1), (44, 2)]
    assert rows[-1]["loss"] == pytest.approx(results["final_train_loss"])


def test_settings_fill_in_the_protocol_defaults_and_reject_unknown_values(pretrained):
    config = tiny_probe_config(pretrained[0])
    config.probe.update(protocol="augmented", epochs=None, learning_rate=None)
    setup = settings(config)
    assert setup["epochs"] == SGD_DEFAULTS["augmented"]["epochs"]
    assert setup["learning_rate"] == SGD_DEFAULTS["augmented"]["learning_rate"]
    assert setup["batch_size"] == 64  # set in the config: kept
    for removed_or_unknown in ("sgd_features", "online"):
        config.probe.protocol = removed_or_unknown
        with pytest.raises(ValueError, match="offline"):
            settings(config)
    config.probe.update(protocol="augmented", head_norm="layernorm")
    with pytest.raises(ValueError, match="head_norm"):
        settings(config)


def test_raw_pixels_and_random_init_together_are_an_error(pretrained, tmp_path):
    config = tiny_probe_config(pretrained[0], raw_pixels=True, random_init=True)
    with pytest.raises(ValueError, match="raw_pixels and config.random_init"):
        linear_probe.run(config, str(tmp_path))


def test_an_intermediate_layer_is_probed_by_name(pretrained, tmp_path):
    """``config.layer`` reads a stage of the backbone (average-pooled), as pretext-task
    papers judge their features; an unknown layer names the valid ones."""
    run_dir = pretrained[0]
    results = knn.run(tiny_probe_config(run_dir, layer="stage2"), str(tmp_path / "knn"))
    assert results["layer"] == "stage2" and results["feature_dim"] == 8  # width 4 x 2
    with pytest.raises(ValueError, match="layer='block9' is not an output .*'stage4'"):
        knn.run(tiny_probe_config(run_dir, layer="block9"), str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="raw_pixels has no layers"):
        linear_probe.run(
            tiny_probe_config(run_dir, layer="stage2", raw_pixels=True), str(tmp_path / "px")
        )
