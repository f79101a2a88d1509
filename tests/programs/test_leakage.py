"""Evaluations learn from the train split only: a relabelled test split exposes leakage.

Two npz folders share one train file and the same test images; one labels the test images
truly, the other ``(y + 1) % 10``, a relabelling that no training label shows. A probe or kNN
memory bank built from the train split predicts the true class, so it scores ~0% on the
relabelled split; one that saw the test split (its features and labels) learns the relabelling
and scores as high as on the true labels. The classes are colours (8x8 images, 10 well-apart
RGB colours plus pixel noise), so even the tiny encoder separates them (~99%): a low score on
the relabelled split cannot come from an encoder that knows nothing, and the true-label score
shows it.
"""

import itertools
import os

import numpy as np
import pytest

from ssl_jax.metrics import read_metrics
from ssl_jax.programs import knn, linear_probe, pretrain
from tests.programs.tiny import tiny_pretrain_config, tiny_probe_config

HONEST_MIN = 90.0  # top-1 (%) with the true test labels; chance is 10%
RELABELLED_MAX = 10.0  # top-1 (%) on the (y + 1) % 10 labels: ~0 without leakage, ~99 with it
PALETTE = np.array([*itertools.product((40, 215), repeat=3), (128, 128, 128), (215, 128, 40)])


def colour_images(rng, n):
    """``n`` 8x8 RGB images of class ``i % 10``: the class's colour plus noise of std 5."""
    labels = np.arange(n) % 10
    noise = 5.0 * rng.normal(size=(n, 8, 8, 3))
    images = np.clip(PALETTE[labels][:, None, None, :] + noise, 0, 255).round()
    return images.astype(np.uint8), labels


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``{"honest": dir, "relabelled": dir}``: identical images, test labels true or shifted."""
    root = tmp_path_factory.mktemp("leakage_data")
    rng = np.random.default_rng(0)
    train_images, train_labels = colour_images(rng, 1437)  # the digits' split sizes
    test_images, test_labels = colour_images(rng, 360)
    out = {}
    for name, shift in (("honest", 0), ("relabelled", 1)):
        folder = root / name
        folder.mkdir()
        np.savez(folder / "train_00.npz", images=train_images, labels=train_labels)
        np.savez(folder / "test_00.npz", images=test_images, labels=(test_labels + shift) % 10)
        out[name] = str(folder)
    return out


@pytest.fixture(scope="module")
def run_dir(folders, tmp_path_factory):
    """Pretraining on the relabelled folder with the kNN monitor at steps 3 and 6.

    Apart from the data, the config of tests/programs/test_pretrain.py's run: the XLA cache
    of the test session then compiles its programs once for both.
    """
    workdir = str(tmp_path_factory.mktemp("leakage_run"))
    config = tiny_pretrain_config(
        **{
            "total_steps": 6,
            "evals.knn.every_steps": 3,
            "evals.knn.k": (5, 20),
            "data.name": "npz",
            "data.path": folders["relabelled"],
        }
    )
    pretrain.run(config, workdir)
    return workdir


def probe_config(run_dir, folder=None, **probe):
    """``folder=None`` keeps the pretraining run's data section (the relabelled folder)."""
    config = tiny_probe_config(run_dir)
    if folder is not None:
        config.data.name = "npz"
        config.data.path = folder
    config.probe.update(probe)
    return config


@pytest.fixture(scope="module")
def knn_results(run_dir, folders, tmp_path_factory):
    """The kNN program with the final encoder: ``{"honest": ..., "relabelled": ...}``."""
    out = {
        name: knn.run(probe_config(run_dir, folder), str(tmp_path_factory.mktemp(name)))
        for name, folder in (("honest", folders["honest"]), ("relabelled", None))
    }
    assert out["honest"]["top1_k5"] > HONEST_MIN, f"kNN too weak to show leakage: {out}"
    return out


# The augmented protocol's SGD needs more steps and a larger learning rate on these views.
PROTOCOLS = {
    "offline": {},
    "augmented": dict(epochs=3, learning_rate=0.1),
}


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_linear_probe_is_trained_on_the_train_split_only(run_dir, folders, tmp_path, protocol):
    probe = dict(protocol=protocol, **PROTOCOLS[protocol])
    honest = linear_probe.run(
        probe_config(run_dir, folders["honest"], **probe), str(tmp_path / "h")
    )
    shifted = linear_probe.run(probe_config(run_dir, **probe), str(tmp_path / "r"))
    assert honest["top1"] > HONEST_MIN, f"probe too weak to show leakage: {honest}"
    assert shifted["data"] == "npz" and shifted["num_test"] == 360
    assert shifted["protocol"] == protocol
    assert shifted["top1"] < RELABELLED_MAX, (
        f"the {protocol} linear probe scores {shifted['top1']:.1f}% on test labels (y + 1) % 10 "
        f"that no training label shows ({honest['top1']:.1f}% on the true labels): it was fit "
        "on the test split"
    )
    if protocol == "offline":
        # Identical train splits: the test labels must not move the choice of L2.
        assert shifted["l2_sweep"] == honest["l2_sweep"] and shifted["l2"] == honest["l2"], (
            "the offline probe's L2 sweep differs between two datasets that differ only in "
            "their test labels: the L2 strength was chosen on the test split"
        )
        assert len(honest["l2_sweep"]) == 5 and abs(honest["num_val"] - 0.2 * 1437) < 10


def test_knn_memory_bank_is_the_train_split(knn_results):
    honest, shifted = knn_results["honest"], knn_results["relabelled"]
    for k in (5, 20):
        assert shifted[f"top1_k{k}"] < RELABELLED_MAX, (
            f"kNN (k={k}) scores {shifted[f'top1_k{k}']:.1f}% on test labels (y + 1) % 10 that "
            f"no training label shows ({honest[f'top1_k{k}']:.1f}% on the true labels): its "
            "memory bank holds the test split"
        )


def test_knn_monitor_memory_bank_is_the_train_split(run_dir, knn_results):
    rows = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    monitored = {r["step"]: r for r in rows if "knn_top1_k5" in r}
    assert sorted(monitored) == [3, 6]
    for step, k in itertools.product((3, 6), (5, 20)):
        top1 = monitored[step][f"knn_top1_k{k}"]
        assert top1 < RELABELLED_MAX, (
            f"the kNN monitor (step {step}, k={k}) scores {top1:.1f}% on test labels "
            f"(y + 1) % 10 that no training label shows (the kNN program on the true labels: "
            f"{knn_results['honest'][f'top1_k{k}']:.1f}%): its memory bank holds the test split"
        )
    # At the last step the monitor saw the exported encoder that the kNN program restores.
    for k in (5, 20):
        program = knn_results["relabelled"][f"top1_k{k}"]
        assert monitored[6][f"knn_top1_k{k}"] == pytest.approx(program, abs=1.0)
