"""Weights in and out: ssl_jax features of imported timm / torchvision models equal
PyTorch's, and export -> import is exact.

The PyTorch side runs in another Python (torch is not a dependency of ssl_jax): set
``SSL_JAX_TORCH_PYTHON`` to an interpreter with torch, timm and safetensors
(``pip install -e .[weights]`` there) and the module fixture runs
``tests/weights/torch_reference.py`` with it, which saves random-weight models and their
features; without it those tests skip. The round-trip and release-layout tests need only
safetensors.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

pytest.importorskip(
    "safetensors", reason="the weight importer reads .safetensors (pip install safetensors)"
)

from ssl_jax.checkpoint import save_export  # noqa: E402
from ssl_jax.export import load_export, make_spec, read_spec  # noqa: E402
from ssl_jax.models import make_backbone  # noqa: E402
from ssl_jax.weights import (  # noqa: E402
    convert_state_dict,
    export_tensors,
    export_weights,
    get_arch,
    import_weights,
    read_state_dict,
    write_safetensors,
)

REFERENCE = Path(__file__).with_name("torch_reference.py")
TOLERANCE = 1e-4  # max abs difference of f32 features


def _reference(tmp_path_factory, slow: bool) -> Path:
    python = os.environ.get("SSL_JAX_TORCH_PYTHON")
    if not python:
        pytest.skip(
            "SSL_JAX_TORCH_PYTHON is not set: point it at a Python with torch, timm and "
            "safetensors (pip install -e .[weights]) to compare with PyTorch."
        )
    out = tmp_path_factory.mktemp("torch_reference")
    cmd = [python, str(REFERENCE), str(out)] + (["--slow"] if slow else [])
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _reference(tmp_path_factory, slow=False)


def _max_diff(ref: Path, case: str, arch: str, size: int, workdir, img_size=None) -> float:
    import_weights(arch, ref / f"{case}.safetensors", workdir, img_size=img_size)
    features = np.asarray(load_export(workdir).encode(np.load(ref / f"{case}_images_{size}.npy")))
    expected = np.load(ref / f"{case}_features_{size}.npy")
    assert features.shape == expected.shape
    diff = float(np.abs(features - expected).max())
    print(f"{arch} {size}px: max abs diff {diff:.2e}, max |feature| {np.abs(expected).max():.2f}")
    return diff


@pytest.mark.parametrize(
    "case,arch,size,img_size",
    [
        ("vit_patch16", "timm:vit_tiny_patch16_224", 224, None),
        ("vit_patch16", "timm:vit_tiny_patch16_224", 256, 256),  # pos-embed upsampled
        ("vit_patch14", "timm:vit_tiny_patch14_224.dino", 224, None),
        ("vit_patch14", "timm:vit_tiny_patch14_224.dino", 168, 168),  # downsampled
        ("torchvision_resnet18", "torchvision:resnet18", 64, 64),
        ("dinov2", "timm:vit_small_patch14_dinov2.lvd142m", 112, 112),  # LayerScale
        ("dinov2", "timm:vit_small_patch14_dinov2.lvd142m", 140, 140),
        ("dinov2_reg4", "timm:vit_small_patch14_reg4_dinov2", 112, 112),  # registers
        ("dinov2_reg4", "timm:vit_small_patch14_reg4_dinov2", 84, 84),
    ],
)
def test_features_equal_pytorch(reference, tmp_path, case, arch, size, img_size):
    assert _max_diff(reference, case, arch, size, tmp_path, img_size) <= TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize(
    "case,arch",
    [("torchvision_resnet50", "torchvision:resnet50"), ("timm_resnet50", "timm:resnet50")],
)
def test_resnet50_features_equal_pytorch(tmp_path_factory, tmp_path, case, arch):
    ref = _reference(tmp_path_factory, slow=True)
    assert _max_diff(ref, case, arch, 64, tmp_path, 64) <= TOLERANCE


def test_timm_input_normalisation_is_timms(reference):
    for tag, cfg in json.loads((reference / "timm_cfgs.json").read_text()).items():
        arch = get_arch(f"timm:{tag}")
        assert (list(arch.mean), list(arch.std)) == (cfg["mean"], cfg["std"]), tag


def test_timm_export_loads_in_timm(reference, tmp_path):
    """An imported then exported (format timm) file loads with timm.create_model's
    pretrained_cfg_overlay and gives the original features."""
    import_weights("timm:vit_tiny_patch16_224", reference / "vit_patch16.safetensors", tmp_path)
    out = tmp_path / "timm.safetensors"
    export_weights(tmp_path, out, format="timm")
    images = reference / "vit_patch16_images_224.npy"
    cmd = [
        os.environ["SSL_JAX_TORCH_PYTHON"],
        str(REFERENCE),
        str(tmp_path),
        "--check-export",
        str(out),
        "vit_tiny_patch16_224",
        "224",
        str(images),
        "inception",
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    expected = np.load(reference / "vit_patch16_features_224.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "export_features.npy"), expected)


# --- without PyTorch: random ssl_jax exports, round trips and release layouts ----------------

VIT = {"backbone": "vit_small", "depth": 2, "img_size": 32, "patch_size": 16, "pool": "cls"}
RESNET = {"backbone": "resnet18", "width": 64, "stem": "imagenet", "zero_init_residual": True}


def _random_run(path, model: dict, seed: int = 0) -> Path:
    """A run directory holding a random export of ``model`` (NumPy draws of the shapes:
    normal parameters, positive statistics)."""
    backbone = make_backbone(ml_collections.ConfigDict(model))
    abstract = jax.eval_shape(backbone.init, jax.random.key(0))
    rng = np.random.default_rng(seed)
    params, stats = (
        jax.tree_util.tree_map(lambda x, f=f: f(x.shape).astype(np.float32), tree)
        for tree, f in zip(
            abstract, (rng.standard_normal, lambda s: rng.uniform(0.5, 1.5, s)), strict=True
        )
    )
    spec = make_spec(
        model,
        input={"size": model.get("img_size", 32), "mean": [0.5] * 3, "std": [0.5] * 3},
        network="online",
        method="simclr",
        feature_dim=backbone.feature_dim,
        step=3,
    )
    save_export(path, 3, encoder={"params": params, "batch_stats": stats}, encoder_spec=spec)
    return Path(path)


def _arrays(run) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(load_export(run).arrays)]


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    return _random_run(tmp_path_factory.mktemp("vit_run"), VIT)


@pytest.mark.parametrize(
    "model,arch",
    [
        (VIT, "timm:vit_small_patch16_224"),
        pytest.param(RESNET, "torchvision:resnet18", marks=pytest.mark.slow),
    ],
)
def test_round_trip_is_exact(tmp_path, model, arch):
    run = _random_run(tmp_path / "run", model)
    for fmt, back_arch in (("timm", arch), ("safetensors", "ssl_jax")):
        out = tmp_path / f"{fmt}.safetensors"
        export_weights(run, out, format=fmt)
        back = tmp_path / f"back_{fmt}"
        import_weights(back_arch, out, back, img_size=32)
        for a, b in zip(_arrays(run), _arrays(back), strict=True):
            np.testing.assert_array_equal(a, b)
    assert load_export(tmp_path / "back_safetensors").spec == load_export(run).spec


@pytest.mark.slow
def test_register_vit_round_trip(tmp_path):
    """timm's register ViTs give [CLS] no position embedding: exporting folds ours into the
    [CLS] token, so the first trip moves it there (same function) and later trips are exact."""
    model = VIT | {"num_registers": 4, "layer_scale": 1e-5, "patch_size": 14, "img_size": 28}
    arch = "timm:vit_small_patch14_reg4_dinov2"
    run = _random_run(tmp_path / "run", model)
    trips = [run]
    for i in range(2):
        out = tmp_path / f"trip{i}.safetensors"
        export_weights(trips[-1], out, format="timm")
        import_weights(arch, out, tmp_path / f"back{i}", img_size=28)
        trips.append(tmp_path / f"back{i}")
    first, second = _arrays(trips[1]), _arrays(trips[2])
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    pos = load_export(trips[1]).arrays["params"]["pos_embed"][...]
    assert not np.any(np.asarray(pos)[:, 0])
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        load_export(trips[1]).encode(images), load_export(run).encode(images), atol=1e-5
    )


def _release(vit_run, layout: dict) -> dict:
    tensors, _ = export_tensors(vit_run, format="timm")
    return {
        name: value
        for prefix, extra in layout.items()
        for name, value in ({f"{prefix}{k}": v for k, v in tensors.items()} | extra).items()
    }


RELEASES = {
    # DINO's full training checkpoint: teacher and student, each with its head.
    "dino:vits16": (
        {
            "teacher.backbone.": {"teacher.head.mlp.0.weight": np.ones((2, 384))},
            "student.module.backbone.": {},
        },
        "dino",
        "target",
        6,
    ),
    # MAE's visualisation checkpoint: {"model": encoder + decoder}.
    "mae:vit_base_patch16": None,
    # MoCo v3: base and momentum encoders with their projector heads, and the predictor.
    "mocov3:vit_small": (
        {
            "state_dict.module.base_encoder.": {
                "state_dict.module.base_encoder.head.0.weight": np.ones((4, 384))
            },
            "state_dict.module.momentum_encoder.": {},
            "state_dict.module.predictor.": {
                "state_dict.module.predictor.0.weight": np.ones((4, 4))
            },
        },
        "mocov3",
        "online",
        12,
    ),
}


@pytest.mark.parametrize("arch", ["dino:vits16", "mocov3:vit_small"])
def test_release_layouts(tmp_path, vit_run, arch):
    layout, method, network, heads = RELEASES[arch]
    file = tmp_path / "release.safetensors"
    write_safetensors(file, _release(vit_run, layout))
    spec = import_weights(arch, file, tmp_path / "imported")
    assert (spec["method"], spec["network"], spec["head"]) == (method, network, False)
    assert spec["model"]["depth"] == 2 and spec["model"].get("num_heads", 6) == heads
    for a, b in zip(_arrays(vit_run), _arrays(tmp_path / "imported"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_mae_layout(tmp_path):
    run = _random_run(tmp_path / "run", VIT | {"backbone": "vit_base"})
    tensors, _ = export_tensors(run, format="timm")
    release = {f"model.{k}": v for k, v in tensors.items()}
    release |= {
        "model.mask_token": np.zeros((1, 1, 512)),
        "model.decoder_embed.weight": np.ones((512, 768)),
    }
    state = read_state_dict(_write(tmp_path / "mae.safetensors", release))
    model, head, flat, left_out = convert_state_dict(state, get_arch("mae:vit_base_patch16"))
    assert sorted(left_out) == ["model.decoder_embed.weight", "model.mask_token"]
    assert head is None and model["backbone"] == "vit_base" and model["img_size"] == 32
    np.testing.assert_array_equal(
        flat["params/blocks/1/attn/qkv/kernel"], tensors["blocks.1.attn.qkv.weight"].T
    )


def _write(path, tensors):
    write_safetensors(path, tensors)
    return path


def test_unmapped_and_missing_tensors_are_named(tmp_path, vit_run):
    tensors, _ = export_tensors(vit_run, format="timm")
    arch = get_arch("timm:vit_small_patch16_224")
    with pytest.raises(ValueError, match=r"no rule maps: \['blocks.0.ls1.gamma'\]"):
        convert_state_dict(tensors | {"blocks.0.ls1.gamma": np.ones(384)}, arch)
    del tensors["blocks.1.mlp.fc2.bias"]
    with pytest.raises(ValueError, match=r"file lacks: \['blocks.1.mlp.fc2.bias'\]"):
        convert_state_dict(tensors, arch)
    with pytest.raises(ValueError, match="width-768 ViT"):
        convert_state_dict(tensors, get_arch("timm:vit_base_patch16_224"))
    with pytest.raises(ValueError, match="neither under the encoder's prefix"):
        convert_state_dict(
            {"teacher.backbone.cls_token": np.ones(1), "odd": np.ones(1)}, get_arch("dino:vits16")
        )
    with pytest.raises(ValueError, match="expected SOURCE:MODEL"):
        get_arch("vit_small_patch16_224")


def test_torch_pickle_without_torch_names_the_extra(tmp_path):
    if "torch" in sys.modules or _has_torch():
        pytest.skip("torch is installed here")
    (tmp_path / "w.pth").write_bytes(b"not read")
    with pytest.raises(ImportError, match=r"\.\[weights\]"):
        read_state_dict(tmp_path / "w.pth")


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def test_graft_encoder_sets_every_backbone(tmp_path):
    """Continued pretraining from an export (ckpt.init_from): online and target backbones
    and their BatchNorm statistics take the export's arrays, heads keep theirs."""
    from ssl_jax.programs.pretrain import graft_encoder

    model = {"backbone": "resnet18", "width": 4, "stem": "cifar"}
    backbone = make_backbone(ml_collections.ConfigDict(model))
    zeros = lambda b: jax.tree.map(  # noqa: E731
        lambda x: jax.numpy.zeros(x.shape, x.dtype), jax.eval_shape(b.init, jax.random.key(0))
    )
    params, stats = zeros(backbone)
    export = load_export(_random_run(tmp_path, model)).arrays
    head = {"kernel": jax.numpy.zeros((2, 2))}
    tree = {
        "params": {"backbone": params, "head": head},
        "state": {
            "batch_stats": {"backbone": stats},
            "target": {"backbone": params, "head": head},
            "center": jax.numpy.zeros(3),
        },
    }
    grafted, paths = graft_encoder(tree, export)
    assert paths == [
        "params/backbone",
        "state/batch_stats/backbone",
        "state/target/backbone",
    ]
    for got, want in (
        (grafted["params"]["backbone"], export["params"]),
        (grafted["state"]["target"]["backbone"], export["params"]),
        (grafted["state"]["batch_stats"]["backbone"], export["batch_stats"]),
    ):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.any(np.asarray(grafted["state"]["target"]["head"]["kernel"]))
    other = make_backbone(ml_collections.ConfigDict(model | {"width": 8}))
    _, none = graft_encoder({"backbone": zeros(other)[0]}, export)
    assert none == []


from tests.methods.test_dino_kd import dino_run, dino_teacher  # noqa: E402, F401, F811


@pytest.mark.parametrize("format", ["timm", "safetensors"])
def test_a_prototype_head_is_left_out_of_the_weights(dino_teacher, format):  # noqa: F811
    """A DINO export's prototype head (for dino_kd) is not a PyTorch model's head: the file
    holds the encoder only and its spec says no head."""

    assert read_spec(dino_teacher)["head"]["kind"] == "prototypes"
    tensors, spec = export_tensors(dino_teacher, format=format)
    assert spec["head"] is False
    assert not [name for name in tensors if name.startswith("head")]
    assert tensors  # the encoder is written
