"""Every config file loads, is locked, has the required fields, and accepts CLI overrides."""

import glob
import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))
PRETRAIN = [p for p in CONFIGS if os.path.basename(p) not in ("linear_probe.py", "knn.py")]
REQUIRED = [
    "seed", "total_steps", "epochs", "data.name", "data.path", "data.batch_size",
    "ckpt.every_steps", "log.every_steps",
]  # fmt: skip


def load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
@pytest.mark.parametrize("variant", [None, "runlocal"])
def test_configs_load_locked(path, variant):
    config = load(path).get_config(variant)
    with pytest.raises(AttributeError):
        config.no_such_field = 1
    with pytest.raises(ValueError, match="runlocal"):
        load(path).get_config("no_such_variant")


@pytest.mark.parametrize("path", PRETRAIN, ids=os.path.basename)
def test_pretraining_configs_have_the_required_fields(path):
    config = load(path).get_config()
    for field in REQUIRED:
        section = config
        for part in field.split("."):
            assert part in section, f"{os.path.basename(path)} lacks {field}"
            section = section[part]


def test_command_line_overrides_reach_every_field_type():
    script = (
        "from absl import flags\n"
        "from ml_collections import config_flags\n"
        "from ssl_jax.methods.views import view_specs_from_config\n"
        "c = config_flags.DEFINE_config_file('config')\n"
        "flags.FLAGS(__import__('sys').argv)\n"
        "v = c.value\n"
        "spec = view_specs_from_config(v.augment)[0]\n"
        "print(spec.crop_scale, spec.blur_prob, spec.mean, v.total_steps, v.data.image_size)\n"
    )
    out = subprocess.run(
        [
            sys.executable, "-c", script,
            "--config=configs/simclr_cifar10.py",
            "--config.augment.crop_scale=(0.2,1.0)",
            "--config.augment.blur_prob=0.5",
            "--config.augment.mean=(0.1,0.2,0.3)",
            "--config.total_steps=7",
            "--config.data.image_size=16",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "(0.2, 1.0) 0.5 (0.1, 0.2, 0.3) 7 16"
