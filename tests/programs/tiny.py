"""A pretraining config small enough for tests: 8x8 digits, width-4 ResNet-18."""

import json
import shutil
from pathlib import Path

import ml_collections

from ssl_jax.config import pretrain_defaults
from ssl_jax.methods import hyperparameters, method_config


def tiny_pretrain_config(**overrides) -> ml_collections.ConfigDict:
    c = pretrain_defaults()
    c.total_steps = 4
    c.data.name = "digits"
    c.data.image_size = 8
    c.data.batch_size = 16
    c.augment.crop_size = 8
    c.augment.crop_scale = (0.5, 1.0)
    c.augment.blur_prob = 0.5
    c.model.width = 4
    name = overrides.pop("method.name", "simclr")
    small = {"proj_hidden_dim": 16, "proj_dim": 8, "bottleneck_dim": 8}
    c.method = method_config(name, **{k: v for k, v in small.items() if k in hyperparameters(name)})
    c.optim.name = "adamw"
    c.optim.base_learning_rate = 1e-3
    c.optim.lr_scaling = "none"
    c.schedule.warmup_epochs = 0.0
    c.ckpt.every_steps = 2
    c.ckpt.async_save = False
    c.log.every_steps = 1
    c.log.progress = False
    for key, value in overrides.items():
        section, _, field = key.rpartition(".")
        target = c
        for part in filter(None, section.split(".")):
            target = target[part]
        target[field] = value
    c.lock()
    return c


def tiny_probe_config(pretrained: str, **fields) -> ml_collections.ConfigDict:
    from ssl_jax.config import probe_defaults

    c = probe_defaults()
    c.pretrained = pretrained
    c.data.batch_size = 64
    c.log.progress = False
    # configs/linear_probe.py's fields, smaller.
    c.raw_pixels = False
    c.data.label_fraction = 1.0
    c.data.val_fraction = 0.2
    c.probe = ml_collections.ConfigDict(
        dict(
            protocol="offline",
            l2_grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0),
            max_iter=300,
            tol=1e-5,
            epochs=5,
            batch_size=64,
            learning_rate=1e-2,
            weight_decay=0.0,
            momentum=0.9,
            crop_scale=(0.08, 1.0),
            flip_prob=0.5,
            head_norm="batchnorm",
        )
    )
    c.knn = ml_collections.ConfigDict(dict(k=(5, 20), temperature=0.07))
    c.update(fields)
    c.lock()
    return c


# The dataset tiny_pretrain_config trains on, as exports and results record it.
DIGITS = {"name": "digits", "image_size": 8, "train_split": "train", "test_split": "test"}


def copy_export(run_dir: str, dest, step: int = 6, *, record_data: bool = True) -> str:
    """``dest``, holding only checkpoint ``step``'s encoder export of ``run_dir`` (arrays and
    spec; no train state, run config or data item): an export copied on its own. Without
    ``record_data`` its spec lacks the dataset, as exports written before specs had it."""
    src, out = Path(run_dir) / "checkpoints" / str(step), Path(dest) / "checkpoints" / str(step)
    out.mkdir(parents=True)
    for name in ("_CHECKPOINT_METADATA", "commit_success.txt"):
        if (src / name).exists():
            shutil.copy(src / name, out / name)
    for item in ("encoder", "encoder_spec"):
        shutil.copytree(src / item, out / item)
    if not record_data:
        spec = json.loads((out / "encoder_spec" / "metadata").read_text())
        del spec["data"]
        (out / "encoder_spec" / "metadata").write_text(json.dumps(spec))
    return str(dest)
