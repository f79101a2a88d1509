"""Every config file loads, is locked, has the required fields, and accepts CLI overrides."""

import glob
import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))
PRETRAIN = [
    p
    for p in CONFIGS
    if os.path.basename(p)
    not in (
        "linear_probe.py",
        "knn.py",
        "compare.py",
        "finetune.py",
        "few_shot.py",
        "cluster.py",
        "convert_data.py",
    )  # fmt: skip
]
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
        "from ssl_jax.augment.from_config import view_specs_from_config\n"
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


def leaves(config, prefix=""):
    """``{dotted path: value}`` of every field (FieldReferences resolved)."""
    out = {}
    for key, value in config.items():
        if hasattr(value, "items"):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def set_field(config, path, value):
    """Assign as a ``--config.path=value`` override does (``ConfigDict.__setitem__``)."""
    *sections, field = path.split(".")
    for part in sections:
        config = config[part]
    config[field] = value


def set_placeholder(config, path):
    for candidate in (1, 1.5, "x", True):
        try:
            return set_field(config, path, candidate)
        except TypeError:
            continue
    raise TypeError(f"{path}: no candidate value fits its placeholder type")


def perturbed(value):
    """Another value of the same type, as a ``--config.key=...`` override could set."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 3
    if isinstance(value, str):
        return value + "_x"
    if isinstance(value, tuple | list):
        return tuple(perturbed(v) for v in value) if value else (1.0,)
    raise TypeError(f"no perturbation for {type(value).__name__} {value!r}")


@pytest.mark.parametrize("path", PRETRAIN, ids=os.path.basename)
@pytest.mark.parametrize("variant", [None, "runlocal"])
def test_overriding_one_field_changes_no_other(path, variant):
    """No two fields share one FieldReference (``b = a_ref`` would make ``--config.a=...``
    silently change ``b``); derived fields may follow ``data.batch_size`` only. Every field
    is changed in turn, whatever its type (bool, int, float, str, tuple, unset)."""
    module = load(path)
    before = leaves(module.get_config(variant))
    for key, value in before.items():
        if key == "data.batch_size":
            continue
        config = module.get_config(variant)
        if value is None:  # an unset placeholder takes a value of its declared type
            set_placeholder(config, key)
        else:
            set_field(config, key, perturbed(value))
        after = leaves(config)
        assert after[key] != value, f"could not change {key}"
        changed = sorted(k for k in before if k != key and after[k] != before[k])
        assert not changed, f"overriding {key} also changed {changed}"


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("dino_cifar10", ("warmup_teacher_temp_steps", "freeze_last_layer_steps")),
        ("swav_cifar10", ("queue_start_step", "freeze_prototypes_steps")),
    ],
)
def test_epoch_based_fields_follow_the_batch_size(name, fields):
    config = load(os.path.join(REPO, "configs", f"{name}.py")).get_config()
    before = [config.method[f] for f in fields]
    config.data.batch_size = 512
    after = [config.method[f] for f in fields]
    for b, a in zip(before, after, strict=True):
        epochs, rest = divmod(b, 50_000 // 256)
        assert rest == 0 and a == epochs * (50_000 // 512), (b, a)


@pytest.mark.parametrize("path", PRETRAIN, ids=os.path.basename)
@pytest.mark.parametrize("variant", [None, "runlocal"])
def test_every_config_builds_its_method_from_exactly_its_hyperparameters(path, variant, request):
    """Each shipped config builds its method, and its ``method`` section holds exactly the
    method's hyperparameters (its factory's keywords): a misspelled field
    (``sinkhorn_epsilom``) is an error, never a silent fall back to the default."""
    from ssl_jax.methods import get_method, hyperparameters

    config = load(path).get_config(variant)
    if "teacher" in config:  # a distillation config: the tiny shared run is the teacher
        config.teacher = request.getfixturevalue("pretrained")[0]
    method = get_method(config, total_steps=1000)
    assert method.name == config.method.name
    fields = set(config.method.keys()) - {"name"}
    assert fields == set(hyperparameters(method.name)), os.path.basename(path)


def test_the_distill_config_variant_names_the_method():
    module = load(os.path.join(REPO, "configs", "distill_cifar10.py"))
    names = {"kd": "kd", "mse,runlocal": "mse", None: "seed", "clusterfit": "clusterfit"}
    names["dino_kd,runlocal"] = "dino_kd"
    for variant, name in names.items():
        assert module.get_config(variant).method.name == name
    assert module.get_config("kd").method.temperature == 4.0
    with pytest.raises(ValueError, match="one of"):
        module.get_config("kd,mse")


@pytest.mark.parametrize("path", PRETRAIN, ids=os.path.basename)
def test_runlocal_shrinks_queues_to_a_multiple_of_its_batch(path):
    """One rule for every config: a queue stays on (or off) and holds 1 or 2 small batches."""
    full, small = load(path).get_config(), load(path).get_config("runlocal")
    queue, batch = small.method.get("queue_length", 0), small.data.batch_size
    assert (queue > 0) == (full.method.get("queue_length", 0) > 0)
    assert queue % batch == 0 and queue <= 2 * batch


def test_eval_entries_take_their_evaluators_defaults():
    from ssl_jax.config import pretrain_defaults
    from ssl_jax.evaluators.registry import DEFAULTS, EVALUATORS, eval_entry

    assert set(DEFAULTS) == set(EVALUATORS)
    evals = pretrain_defaults().evals
    for kind in DEFAULTS:
        assert evals[kind].to_dict() == {"type": kind, "every_steps": 0, **DEFAULTS[kind]}
    assert eval_entry("knn", every_steps=5, k=(5,))["k"] == (5,)
    with pytest.raises(ValueError, match="temperature"):
        eval_entry("knn", temprature=0.1)


@pytest.mark.parametrize("name", ["dino_cifar10", "mocov3_cifar10"])
def test_the_vit_variant_changes_the_backbone_and_the_optimizer_only(name):
    """``:vit`` is the authors' ViT recipe on ViT-Tiny/4: a ViT and AdamW, the method's views
    and data untouched; ``vit,runlocal`` shrinks it as ``runlocal`` does; a repeated or unknown
    variant is an error."""
    module = load(os.path.join(REPO, "configs", f"{name}.py"))
    base, vit = module.get_config().to_dict(), module.get_config("vit").to_dict()
    assert vit["model"]["backbone"] == "vit_tiny" and vit["model"]["patch_size"] == 4
    assert vit["model"]["img_size"] == 32 and vit["optim"]["name"] == "adamw"
    changed = {s for s in base if base[s] != vit[s]}
    assert changed == {"model", "optim", "method"}
    assert vit["augment"] == base["augment"] and vit["data"] == base["data"]
    small = module.get_config("vit,runlocal")
    assert small.model.backbone == "vit_tiny" and small.model.img_size == small.augment.crop_size
    assert small.data.name == "digits"
    for bad in ("vit,vit", "vit,tiny"):
        with pytest.raises(ValueError, match="vit,runlocal"):
            module.get_config(bad)
