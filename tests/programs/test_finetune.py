"""The fine-tuning program on the shared tiny pretraining run (tests/conftest.py ``pretrained``).

One 6-step fine-tuning on 8 devices (module fixture ``finetuned``) serves the end-to-end,
selection and resume tests; ``scratch`` is a random-init run with a frozen backbone and no
validation split. Identical configs compile once per session (the XLA cache of conftest.py).
"""

import importlib.util
import json
import logging
import os

import jax
import numpy as np
import pytest

from ssl_jax import checkpoint
from ssl_jax.data import DataError, get_source
from ssl_jax.data.subset import class_balanced_subset, source_labels
from ssl_jax.export import load_export
from ssl_jax.metrics import read_metrics
from ssl_jax.parallel import make_mesh
from ssl_jax.programs import finetune
from tests.programs.tiny import DIGITS, copy_export

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config_module():
    spec = importlib.util.spec_from_file_location("finetune_config", f"{REPO}/configs/finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def finetune_config(source: str, **overrides):
    """The shipped configs/finetune.py shrunk for tests (8x8 digits, 6 steps of 16 images),
    with label smoothing, Mixup and CutMix on; ``overrides`` as ``{"a.b": value}``."""
    c = load_config_module().get_config()
    c.unlock()
    fields = {
        "pretrained": source,
        "total_steps": 6,
        "data.name": "digits",
        "data.image_size": 8,
        "data.batch_size": 16,
        "data.label_fraction": 0.5,
        "data.val_fraction": 0.1,
        "finetune.label_smoothing": 0.1,
        "finetune.mixup_alpha": 0.2,
        "finetune.cutmix_alpha": 1.0,
        "finetune.eval_every_steps": 2,
        "finetune.eval_batch_size": 64,
        "optim.base_learning_rate": 8.0,  # lr 0.5: the validation accuracy moves in 6 steps
        "ckpt.every_steps": 2,
        "ckpt.async_save": False,
        "log.every_steps": 1,
        "log.progress": False,
        **overrides,
    }
    for key, value in fields.items():
        *sections, field = key.split(".")
        target = c
        for part in sections:
            target = target[part]
        target[field] = value
    c.lock()
    return c


def losses(workdir):
    return {r["step"]: r["loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))}


def restore_raw(run_dir, step):
    ckpt = checkpoint.Checkpointer(run_dir, read_only=True)
    try:
        state, _ = ckpt.restore(step, None)
    finally:
        ckpt.close()
    return jax.device_get(state)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def leaves_equal(a, b) -> bool:
    a, b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# No data flags: the export's dataset, the 8x8 digits that finetune_config names explicitly.
FOLLOW_THE_EXPORT = {"data.name": "", "data.image_size": None}


@pytest.fixture(scope="module")
def finetuned(pretrained, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("finetune"))
    return workdir, finetune.run(finetune_config(pretrained[0], **FOLLOW_THE_EXPORT), workdir)


@pytest.fixture(scope="module")
def no_validation(pretrained, tmp_path_factory):
    """Another seed (3), no validation split; the train step is ``finetuned``'s (compiled once)."""
    workdir = str(tmp_path_factory.mktemp("no_validation"))
    config = finetune_config(pretrained[0], **{"seed": 3, "data.val_fraction": 0.0})
    return workdir, finetune.run(config, workdir)


def test_finetune_writes_results_metrics_subsets_and_checkpoints(finetuned, pretrained):
    workdir, results = finetuned
    assert read_json(os.path.join(workdir, "results.json")) == json.loads(json.dumps(results))
    assert results["program"] == "finetune" and results["dataset"] == DIGITS
    assert results["split"] == "test" and results["num_test"] == 360
    assert results["encoder"] == "pretrained" and results["pretrained"] == pretrained[0]
    assert results["step"] == 6 and results["encoder_method"] == "simclr"
    assert results["backbone"] == "resnet18" and results["feature_dim"] == 32
    assert results["label_fraction"] == 0.5 and results["num_classes"] == 10
    assert 0 <= results["top1"] <= results["top5"] <= 100
    assert results["final_step"] == results["total_steps"] == 6
    assert results["chosen_epoch"] == results["chosen_step"] / results["steps_per_epoch"]

    labels = source_labels(get_source(finetune_config("x").data, "train"))
    subset = read_json(os.path.join(workdir, "label_subset.json"))
    val = read_json(os.path.join(workdir, "val_split.json"))
    expected = class_balanced_subset(labels, 0.5, seed=0)
    assert subset["indices"] == expected.tolist() and subset["label_fraction"] == 0.5
    assert set(val["indices"]) < set(subset["indices"])
    assert results["num_labelled"] == len(expected) == results["num_train"] + results["num_val"]
    assert results["num_val"] == val["count"] == 70  # 10% of each class of the subset
    assert np.bincount(labels[val["indices"]], minlength=10).min() >= 6  # class-balanced

    rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(r["loss"]) and 0 <= r["train_top1"] <= 100 for r in rows)
    assert [r["step"] for r in rows if "val_top1" in r] == [2, 4, 6]
    assert checkpoint.resolve_step(workdir) == 6
    # The last checkpoint's encoder is the fine-tuned backbone, which moved (lr_mult 1).
    tuned, source = load_export(workdir), load_export(pretrained[0])
    assert tuned.spec["method"] == "finetune" and tuned.spec["input"] == source.spec["input"]
    assert tuned.spec["head"] == {"kind": "bn_linear", "num_classes": 10}  # the head comes too
    assert tuned.spec["data"] == DIGITS  # what it was fine-tuned on, for the probes after it
    assert source.spec["head"] is False and source.head is None
    assert not leaves_equal(tuned.arrays["params"], source.arrays["params"])


def test_the_best_validation_step_is_the_one_reported_on_test(finetuned):
    workdir, results = finetuned
    rows = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "val_top1" in r]
    best = max(rows, key=lambda r: r["val_top1"])  # the first of equal maxima
    assert len({r["val_top1"] for r in rows}) > 1  # a choice to make (here: step 4 of 2, 4, 6)
    assert results["selected_by"] == "val_top1"
    assert results["chosen_step"] == best["step"] and results["val_top1"] == best["val_top1"]
    best_dir = os.path.join(workdir, checkpoint.BEST_DIR)
    assert checkpoint.resolve_step(best_dir) == best["step"]
    # Recompute the chosen validation and the reported test top-1 from the kept checkpoint by
    # another path: its backbone export's features (load_export) and its head in NumPy.
    encoder = load_export(best_dir)
    state = restore_raw(best_dir, best["step"])
    head = state["params"]["head"]["linear"]
    norm = state["method_state"]["head"]["norm"]  # the default head: BatchNorm, then linear
    mean, var = norm["mean"]["value"], norm["var"]["value"]

    def top1(images, labels):
        features = (np.asarray(encoder.encode(images)) - mean) / np.sqrt(var + 1e-5)
        logits = features @ head["kernel"]["value"] + head["bias"]["value"]
        # The export's own head (load_export rebuilds it from the spec) gives the same logits.
        np.testing.assert_allclose(encoder.logits(images), logits, rtol=1e-4, atol=1e-4)
        return 100 * np.mean(logits.argmax(-1) == labels)

    data = finetune_config("x").data
    val = read_json(os.path.join(workdir, "val_split.json"))["indices"]
    np.testing.assert_allclose(results["val_top1"], top1(*get_source(data, "train").get(val)))
    np.testing.assert_allclose(results["top1"], top1(*get_source(data, "test").get(np.arange(360))))


@pytest.mark.slow  # about 10 s; pretraining's resume test runs by default
def test_resume_continues_the_same_trajectory(finetuned, pretrained, tmp_path):
    reference, expected = finetuned
    workdir = str(tmp_path / "resumed")
    config = finetune_config(pretrained[0])
    first = finetune.run(config, workdir, should_stop=lambda step: step == 3)
    assert first["interrupted_at"] == 3 and "top1" not in first
    assert checkpoint.resolve_step(workdir) == 3
    second = finetune.run(config, workdir)
    assert second["start_step"] == 3 and second["final_step"] == 6
    got, want = losses(workdir), losses(reference)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([got[s] for s in got], [want[s] for s in got], rtol=1e-6)
    for key in ("chosen_step", "val_top1", "top1", "top5"):
        assert second[key] == pytest.approx(expected[key]), key


@pytest.mark.slow  # a 1-device train step to compile (about 20 s)
def test_one_and_eight_devices_give_the_same_trajectory(finetuned, pretrained, tmp_path):
    reference, _ = finetuned  # 8 devices
    config = finetune_config(pretrained[0], **{"mesh.num_devices": 1})
    finetune.run(config, str(tmp_path / "one"), should_stop=lambda step: step == 3)
    got, want = losses(str(tmp_path / "one")), losses(reference)
    assert sorted(got) == [1, 2, 3]
    np.testing.assert_allclose([got[s] for s in got], [want[s] for s in got], rtol=2e-5)


@pytest.mark.slow  # an fsdp train step to compile (about 30 s)
def test_an_fsdp_run_follows_the_replicated_one(finetuned, pretrained, tmp_path):
    """``mesh.fsdp``: the classifier's state split over the 8 devices, the same losses and the
    same chosen test accuracy as the replicated 8-device run."""
    reference, expected = finetuned
    fields = {**FOLLOW_THE_EXPORT, "mesh.fsdp": True, "mesh.fsdp_min_size": 0}
    result = finetune.run(finetune_config(pretrained[0], **fields), str(tmp_path / "fsdp"))
    got, want = losses(str(tmp_path / "fsdp")), losses(reference)
    assert sorted(got) == sorted(want)
    np.testing.assert_allclose([got[s] for s in got], [want[s] for s in got], rtol=2e-5)
    for key in ("chosen_step", "top1"):
        assert result[key] == pytest.approx(expected[key]), key


@pytest.mark.slow  # a jitted random initialisation of the backbone to compile (about 20 s)
def test_random_init_starts_from_a_fresh_backbone_of_the_architecture(pretrained, tmp_path):
    mesh = make_mesh()
    seen = {}
    real_make_start_fn = finetune.make_start_fn

    def spy(*args):
        start = real_make_start_fn(*args)

        def spied(seed, arrays):
            seen["arrays"] = jax.device_get(arrays)
            return start(seed, arrays)

        return spied

    config = finetune_config(pretrained[0], **{"random_init": True, "seed": 3})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(finetune, "make_start_fn", spy)
        results = finetune.run(config, str(tmp_path / "scratch"))
    assert results["encoder"] == "random_init" and results["seed"] == 3
    assert results["step"] == 6 and 0 <= results["top1"] <= 100
    # The linear probe's baseline encoder for seed 3 (the same jitted program: one compile).
    fresh = load_export(pretrained[0], mesh=mesh, random_init_seed=3).arrays
    assert leaves_equal(seen["arrays"], jax.device_get(fresh))
    assert not leaves_equal(fresh["params"], load_export(pretrained[0]).arrays["params"])


def test_without_validation_the_last_step_is_reported(no_validation, finetuned):
    workdir, results = no_validation
    assert results["selected_by"] == "last_step" and results["chosen_step"] == 6
    assert results["num_val"] == 0 and "val_top1" not in results
    assert results["num_train"] == results["num_labelled"] == 718
    assert not os.path.exists(os.path.join(workdir, "val_split.json"))
    assert not os.path.exists(os.path.join(workdir, checkpoint.BEST_DIR))
    # Another seed draws another labelled subset (its file says which).
    subset = read_json(os.path.join(workdir, "label_subset.json"))
    other = read_json(os.path.join(finetuned[0], "label_subset.json"))
    assert subset["seed"] == 3 and subset["indices"] != other["indices"]


@pytest.mark.slow  # a train step of its own to compile (about 20 s)
def test_backbone_lr_mult_zero_trains_only_the_head(pretrained, tmp_path):
    workdir = str(tmp_path / "frozen")
    config = finetune_config(pretrained[0], **{"optim.param_groups.backbone.lr_mult": 0.0})
    finetune.run(config, workdir)
    source = jax.device_get(load_export(pretrained[0]).arrays)
    final = restore_raw(workdir, 6)
    assert leaves_equal(final["params"]["backbone"], source["params"])
    assert np.abs(final["params"]["head"]["linear"]["kernel"]["value"]).max() > 0  # zero at init
    # BatchNorm statistics still follow the data (train mode): only the updates are scaled.
    assert not leaves_equal(final["method_state"]["backbone"], source["batch_stats"])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("data.label_fraction", 0.0, r"label_fraction=0.0 must be in \(0, 1\]"),
        ("data.label_fraction", 1.5, r"label_fraction=1.5 must be in \(0, 1\]"),
        ("data.val_fraction", 1.0, r"val_fraction=1.0 must be in \[0, 1\)"),
        ("pretrained", "", "config.pretrained is empty"),
        ("finetune.eval_every_steps", -1, "eval_every_steps=-1 must be 0"),
        ("finetune.drop_path_rate", 1.0, r"drop_path_rate=1.0 must be in \[0, 1\)"),
    ],
)
def test_bad_config_fails_before_anything_is_written(tmp_path, field, value, match):
    config = finetune_config("/nonexistent", **{field: value, "log.every_steps": 2})
    with pytest.raises(ValueError, match=match):
        finetune.run(config, str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")


def test_an_export_alone_is_enough_and_its_dataset_the_default(pretrained, tmp_path, caplog):
    """No run config is read: an export copied on its own fine-tunes on the dataset its spec
    records (the fixture's step, compiled once); one that records none needs data flags."""
    export = copy_export(pretrained[0], tmp_path / "export")
    config = finetune_config(export, **FOLLOW_THE_EXPORT)
    with caplog.at_level(logging.INFO, logger="ssl_jax.programs.common"):
        results = finetune.run(config, str(tmp_path / "w"), should_stop=lambda step: step == 1)
    assert results["interrupted_at"] == 1 and results["dataset"] == DIGITS
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data: ")]
    assert lines == [
        "data: digits 8px (the export's dataset): 1437 train and 360 test images, 10 classes"
    ]
    old = copy_export(pretrained[0], tmp_path / "old", record_data=False)
    with pytest.raises(ValueError, match="does not record the dataset.*--config.data.name="):
        finetune.run(finetune_config(old, **FOLLOW_THE_EXPORT), str(tmp_path / "old_w"))


def test_unknown_run_directory_is_an_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="No checkpoint found under"):
        finetune.run(finetune_config(str(tmp_path / "missing")), str(tmp_path / "w"))


def test_a_validation_split_that_holds_out_nothing_is_an_error(pretrained, tmp_path):
    # 1% of ~144 images per class is one image, which must stay in training.
    config = finetune_config(pretrained[0], **{"data.label_fraction": 0.01})
    with pytest.raises(DataError, match="holds out none"):
        finetune.run(config, str(tmp_path / "w"))


def test_drop_path_on_a_resnet_export_is_an_error_naming_the_fix(pretrained, tmp_path):
    config = finetune_config(pretrained[0], **{"finetune.drop_path_rate": 0.1})
    with pytest.raises(ValueError, match="needs a ViT backbone .* resnet18; set it to 0"):
        finetune.run(config, str(tmp_path / "w"))


def test_resuming_with_another_encoder_is_an_error(finetuned, pretrained):
    workdir, _ = finetuned
    config = finetune_config(pretrained[0], random_init=True)
    with pytest.raises(checkpoint.CheckpointError, match="random_init=False"):
        finetune.run(config, workdir)
    # The source step is pinned: the run started from step 6 (the newest), not step 4.
    with pytest.raises(checkpoint.CheckpointError, match="fine-tuning of step 6 .* step=4"):
        finetune.run(finetune_config(pretrained[0], step=4), workdir)


def test_the_runlocal_config_is_a_small_run_on_the_exports_data():
    module = load_config_module()
    config, local = module.get_config(), module.get_config("runlocal")
    assert local.total_steps == 20 and local.data.batch_size == 64
    assert config.data.name == local.data.name == ""  # the export's dataset, unless named
    assert config.optim.name == "sgd" and config.optim.nesterov
    assert config.finetune.eval_every_steps % config.log.every_steps == 0
    assert local.finetune.eval_every_steps % local.log.every_steps == 0


@pytest.mark.slow  # a subprocess compiling the runlocal step (about 40 s)
def test_launch_runs_the_runlocal_config(pretrained, tmp_path):
    import subprocess
    import sys

    workdir = tmp_path / "launch"
    out = subprocess.run(
        [
            sys.executable,
            "launch/finetune.py",
            "--config=configs/finetune.py:runlocal",
            f"--config.pretrained={pretrained[0]}",
            "--config.total_steps=4",
            "--config.finetune.eval_every_steps=0",
            "--config.log.progress=False",
            f"--workdir={workdir}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "XLA_FLAGS": "", "JAX_COMPILATION_CACHE_DIR": ""},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = read_json(workdir / "results.json")
    assert results["final_step"] == 4 and results["chosen_step"] == 4
    assert results["label_fraction"] == 0.1 and results["data"] == "digits"
    assert json.loads(out.stdout)["top1"] == results["top1"]
