"""The encoder export: its spec, ``load_export`` and the frozen-feature function.

The tests that need a checkpoint use the tiny pretraining run shared with
tests/programs/test_pretrain.py (the ``pretrained`` fixture of tests/conftest.py).
"""

import logging
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from ssl_jax import checkpoint
from ssl_jax.augment import IMAGENET_MEAN, IMAGENET_STD, eval_view
from ssl_jax.augment.from_config import eval_settings
from ssl_jax.encoder import (
    Export,
    check_spec,
    compute_dtype,
    load_export,
    make_backbone,
    make_encode_fn,
    make_input_spec,
    make_spec,
    preprocess,
)
from ssl_jax.models import ModuleDef, VisionTransformer, split_module
from ssl_jax.parallel import make_mesh
from tests.programs.tiny import tiny_pretrain_config

RGB = dict(size=8, mean=IMAGENET_MEAN, std=IMAGENET_STD)
MODEL = {"backbone": "resnet18", "width": 4, "stem": "cifar", "zero_init_residual": True}


def spec_fields(**overrides):
    fields = dict(input=RGB, network="online", method="simclr", feature_dim=32, step=6)
    return {**fields, **overrides}


@pytest.fixture(scope="module")
def images():
    """16 random uint8 images of 12x12 pixels: encode resizes them to the spec's 8x8."""
    return np.random.default_rng(0).integers(0, 256, (16, 12, 12, 3), dtype=np.uint8)


def copy_run(pretrained, tmp_path) -> str:
    workdir = str(tmp_path / "run")
    shutil.copytree(pretrained[0], workdir)
    return workdir


def old_encode(run_dir, images):
    """Features as the programs computed them before exports carried a spec: the backbone of
    the run config's ``model``, the input of its ``augment`` recipe's evaluation view."""
    config = ml_collections.ConfigDict(checkpoint.read_config(run_dir))
    backbone = make_backbone(config.model)
    settings = eval_settings(config.augment)
    abstract = jax.eval_shape(
        lambda key: dict(zip(("params", "batch_stats"), backbone.init(key), strict=True)),
        jax.random.key(0),
    )
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(
            x.shape, x.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])
        ),
        abstract,
    )
    export, _ = checkpoint.restore_encoder(run_dir, abstract)

    def encode(export, x):
        x = eval_view(
            x,
            size=settings["size"],
            mean=jnp.asarray(settings["mean"]),
            std=jnp.asarray(settings["std"]),
        )
        return backbone.apply(export["params"], export["batch_stats"], x, train=False)[0]

    return np.asarray(jax.jit(encode)(export, images))


def test_every_checkpoint_carries_the_spec_of_its_export(pretrained):
    workdir, _ = pretrained
    config = tiny_pretrain_config()
    for step in (2, 4, 6):
        assert checkpoint.read_encoder_spec(workdir, step) == {
            "format": 1,
            "model": config.model.to_dict(),
            "input": {
                "size": 8,
                "channels": 3,
                "color_space": "rgb",
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
            },
            "network": "online",
            "method": "simclr",
            "feature_dim": 32,  # 8 * width
            "step": step,
            "head": False,
            # The dataset it was trained on: the adaptation programs' default.
            "data": {
                "name": "digits",
                "image_size": 8,
                "train_split": "train",
                "test_split": "test",
            },
        }


def test_load_export_encodes_as_the_old_path_did(pretrained, images):
    workdir, _ = pretrained
    export = load_export(workdir)
    assert export.step == 6 and export.feature_dim == 32 and export.random_init_seed is None
    assert set(export.arrays) == {"params", "batch_stats"}
    want = old_encode(workdir, images)
    assert want.shape == (16, 32) and np.abs(want).max() > 0
    np.testing.assert_array_equal(np.asarray(export.encode(images)), want)
    on_mesh = load_export(workdir, 4, mesh=make_mesh(-1))
    assert on_mesh.step == 4
    leaf = jax.tree.leaves(on_mesh.arrays)[0]
    assert len(leaf.sharding.device_set) == 8 and leaf.sharding.is_fully_replicated
    assert not np.array_equal(np.asarray(on_mesh.encode(images)), want)  # step 4, not 6


def test_random_init_is_a_fresh_init_of_the_same_architecture(pretrained, images):
    workdir, _ = pretrained
    trained = load_export(workdir)
    # On the mesh, as the programs' random-init baseline (one compiled initialiser for both).
    rand = load_export(workdir, mesh=make_mesh(-1), random_init_seed=3)
    assert rand.random_init_seed == 3 and rand.spec == trained.spec
    shapes = jax.tree.map(lambda x: (x.shape, x.dtype), trained.arrays)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), rand.arrays) == shapes
    # Fresh BatchNorm statistics (the trained run's moved away from them).
    for name, value in (("mean", 0.0), ("var", 1.0)):
        stats = nnx.to_flat_state(rand.arrays["batch_stats"])
        assert all(np.all(np.asarray(x) == value) for path, x in stats if path[-1] == name)
    assert not jax.tree.all(
        jax.tree.map(lambda a, b: np.array_equal(a, b), trained.arrays, rand.arrays)
    )
    features = np.asarray(rand.encode(images))
    np.testing.assert_array_equal(rand.random_init(3).encode(images), features)
    assert not np.allclose(rand.random_init(4).encode(images), features)
    assert not np.allclose(trained.encode(images), features)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_restoring_into_another_architecture_names_the_first_difference(pretrained, tmp_path):
    workdir, _ = pretrained
    wide = make_backbone(ml_collections.ConfigDict({**MODEL, "width": 8}))
    abstract = jax.eval_shape(
        lambda key: dict(zip(("params", "batch_stats"), wide.init(key), strict=True)),
        jax.random.key(0),
    )
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.restore_encoder(workdir, abstract)
    assert "differs at params/bn1/bias: checkpoint (4,), model (8,)." in str(info.value)
    # Resuming a run with another --config.model fails the same way, before any compilation.
    from ssl_jax.programs import pretrain

    copy = copy_run(pretrained, tmp_path)
    config = tiny_pretrain_config(**{"total_steps": 6, "model.width": 8})
    with pytest.raises(checkpoint.CheckpointError) as info:
        pretrain.run(config, copy)
    message = str(info.value)
    assert "differs at params/backbone/bn1/bias: checkpoint (4,), model (8,)." in (message)
    assert "start a new workdir" in message


def test_an_export_without_a_spec_loads_from_its_run_config(pretrained, tmp_path, images, caplog):
    """Checkpoints written before exports carried a spec: it is derived from the config."""
    workdir = copy_run(pretrained, tmp_path)
    written = checkpoint.read_encoder_spec(workdir, 6)
    shutil.rmtree(f"{workdir}/checkpoints/6/encoder_spec")
    assert checkpoint.read_encoder_spec(workdir, 6) is None
    with caplog.at_level(logging.WARNING, logger="ssl_jax.encoder"):
        export = load_export(workdir)
    assert export.spec == written
    assert "no encoder_spec item" in caplog.text
    np.testing.assert_array_equal(
        np.asarray(export.encode(images)), load_export(pretrained[0]).encode(images)
    )
    shutil.rmtree(f"{workdir}/checkpoints/6/config")
    with pytest.raises(checkpoint.CheckpointError, match="no encoder_spec item, nor a run config"):
        load_export(workdir)


def test_an_invalid_spec_in_a_checkpoint_is_a_checkpoint_error(pretrained, tmp_path):
    workdir = copy_run(pretrained, tmp_path)
    path = f"{workdir}/checkpoints/6/encoder_spec/metadata"
    with open(path, "w") as f:
        f.write('{"format": 2}')
    with pytest.raises(checkpoint.CheckpointError, match=r"checkpoints/6 is not valid.*format 2"):
        load_export(workdir)
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(checkpoint.CheckpointError, match="Cannot read the encoder spec"):
        load_export(workdir)


def test_make_spec_validates_every_field():
    spec = make_spec(MODEL, **spec_fields())
    assert check_spec(spec) == spec
    assert make_spec(ml_collections.ConfigDict(MODEL), **spec_fields()) == spec
    bad = {
        "color_space": spec_fields(input={**RGB, "color_space": "hsv"}),
        "channels=1 does not fit": spec_fields(input={**RGB, "channels": 1}),
        "one value per channel": spec_fields(input={**RGB, "mean": (0.5, 0.5), "channels": 3}),
        "std must be positive": spec_fields(input={**RGB, "std": (0.2, 0.0, 0.2)}),
        "input size": spec_fields(input={**RGB, "size": 0}),
        "network='ema'": spec_fields(network="ema"),
        "method": spec_fields(method=""),
        "feature_dim": spec_fields(feature_dim=0),
        "step": spec_fields(step=-1),
        "head must be false or a head section": spec_fields(head=True),
        "exactly 'kind' and 'num_classes'": spec_fields(head={"kind": "linear"}),
        "head kind='mlp' is unknown": spec_fields(head={"kind": "mlp", "num_classes": 3}),
        "head num_classes": spec_fields(head={"kind": "linear", "num_classes": 0}),
        "dataset needs a name": spec_fields(data={"path": "/data"}),
        r"dataset fields \['batch_size'\] are unknown": spec_fields(
            data={"name": "digits", "batch_size": 8}
        ),
        "dataset image_size must be a positive int": spec_fields(
            data={"name": "digits", "image_size": "8"}
        ),
    }
    for message, fields in bad.items():
        with pytest.raises(ValueError, match=message):
            make_spec(MODEL, **fields)
    with pytest.raises(ValueError, match="backbone"):
        make_spec({"width": 4}, **spec_fields())
    with pytest.raises(ValueError, match="format 2 is not 1"):
        check_spec({**spec, "format": 2})
    with pytest.raises(ValueError, match=r"missing: \['head'\], unknown: \['extra'\]"):
        check_spec({**{k: v for k, v in spec.items() if k != "head"}, "extra": 1})
    gray = make_input_spec(size=8, mean=(0.5,), std=(0.25,), color_space="gray")
    assert gray["channels"] == 1
    head = {"kind": "bn_linear", "num_classes": 10}
    assert check_spec(make_spec(MODEL, **spec_fields(head=head)))["head"] == head
    # The dataset: its identifying fields; a spec written before it had none reads as None.
    data = {"name": "npz", "path": "/data/cifar10", "test_split": "test", "num_classes": 10}
    assert check_spec(make_spec(MODEL, **spec_fields(data=data)))["data"] == data
    assert spec["data"] is None
    assert check_spec({k: v for k, v in spec.items() if k != "data"}) == spec


def test_preprocess_converts_to_the_spec_colour_space():
    # sRGB gray 128, red, green, blue, white: CIE L* 53.59, 53.24, 87.73, 32.30, 100.
    pixels = np.array([[128, 128, 128], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255] * 3])
    images = np.broadcast_to(pixels[:, None, None], (5, 4, 4, 3)).astype(np.uint8)
    lab = make_input_spec(size=4, mean=(0.0,), std=(0.01,), color_space="lab_l")
    lightness = np.asarray(preprocess(images, lab))
    assert lightness.shape == (5, 4, 4, 1)
    np.testing.assert_allclose(
        lightness[:, 0, 0, 0], [53.59, 53.24, 87.73, 32.30, 100.0], atol=0.01
    )
    gray = make_input_spec(size=2, mean=(0.0,) * 3, std=(1.0,) * 3, color_space="gray")
    luma = np.asarray(preprocess(images, gray))
    assert luma.shape == (5, 2, 2, 3)
    np.testing.assert_allclose(luma[1, 0, 0], [0.299] * 3, rtol=1e-5)
    rgb = make_input_spec(size=4, mean=(0.5,) * 3, std=(0.25,) * 3)
    np.testing.assert_array_equal(
        preprocess(images, rgb), eval_view(images, size=4, mean=(0.5,) * 3, std=(0.25,) * 3)
    )


def module_backbone(module: nnx.Module) -> ModuleDef:
    graphdef, _, _ = split_module(module)
    return ModuleDef(graphdef=graphdef, build=None, feature_dim=getattr(module, "feature_dim", 0))


def test_encode_from_an_intermediate_layer(pretrained, images):
    workdir, _ = pretrained
    export = load_export(workdir)
    pooled = np.asarray(export.encode(images))
    # The last stage's map, average-pooled, is the pooled output.
    np.testing.assert_allclose(export.encode(images, layer="stage4"), pooled, rtol=1e-6)
    assert export.encode(images, layer="stem").shape == (16, 4)  # width 4
    with pytest.raises(ValueError, match=r"layer='stage9' is not an output.*'stage4', 'stem'"):
        export.encode(images, layer="stage9")

    vit = VisionTransformer(
        img_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2, rngs=nnx.Rngs(0)
    )
    _, params, stats = split_module(vit)
    encode = jax.jit(make_encode_fn(module_backbone(vit), RGB, layer="tokens"))
    cls = encode({"params": params, "batch_stats": stats}, images)
    pooled = jax.jit(make_encode_fn(module_backbone(vit), RGB))(
        {"params": params, "batch_stats": stats}, images
    )
    assert cls.shape == (16, 8)
    np.testing.assert_allclose(cls, pooled, rtol=1e-5, atol=1e-6)  # the normed [CLS] token


def test_export_encode_takes_float_images_in_unit_range_only(images):
    backbone = make_backbone(ml_collections.ConfigDict(MODEL))
    params, batch_stats = backbone.init(jax.random.key(0))
    export = Export(
        spec=make_spec(MODEL, **spec_fields()),
        arrays={"params": params, "batch_stats": batch_stats},
        backbone=backbone,
    )
    want = np.asarray(export.encode(images))
    as_255 = images.astype(np.float32)
    np.testing.assert_allclose(export.encode(as_255 / 255), want, rtol=1e-6, atol=1e-6)
    error = r"values in \[0, 255\], expected \[0, 1\]; divide 0..255 images by 255, or pass"
    with pytest.raises(ValueError, match=error):
        export.encode(as_255)
    with pytest.raises(ValueError, match=error):
        export.logits(jnp.asarray(as_255))


def test_a_backbone_without_intermediate_outputs_says_so(images):
    linear = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    _, params, stats = split_module(linear)
    encode = make_encode_fn(module_backbone(linear), RGB, layer="stage1")
    with pytest.raises(NotImplementedError, match="return_all=True"):
        encode({"params": params, "batch_stats": stats}, images)


def test_a_bfloat16_backbone_computes_in_bfloat16_from_float32_params(pretrained, images):
    """``model.dtype=bfloat16``: the same float32 arrays, convolutions in bfloat16, float32
    pooled features close to the float32 backbone's."""
    export = load_export(pretrained[0])
    assert compute_dtype(export.spec["model"]) == jnp.float32  # absent: float32
    bf16 = make_backbone(ml_collections.ConfigDict({**export.spec["model"], "dtype": "bfloat16"}))
    assert jax.tree.map(jnp.shape, bf16.init(jax.random.key(0))) == jax.tree.map(
        jnp.shape, (export.arrays["params"], export.arrays["batch_stats"])
    )
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16.init(jax.random.key(0))))
    x = preprocess(images, export.spec["input"])
    arrays = (export.arrays["params"], export.arrays["batch_stats"])
    jaxpr = str(jax.make_jaxpr(lambda p, s, x: bf16.apply(p, s, x, train=False))(*arrays, x))
    assert "conv_general_dilated" in jaxpr and "bf16[16,8,8,4]" in jaxpr
    low, _ = jax.jit(lambda p, s, x: bf16.apply(p, s, x, train=False))(*arrays, x)
    assert low.dtype == jnp.float32
    want = np.asarray(export.encode(images))
    np.testing.assert_allclose(low, want, rtol=0.05, atol=0.05 * np.abs(want).max())
    assert not np.array_equal(low, want)
    with pytest.raises(ValueError, match="model.dtype='float16' is unknown"):
        make_backbone(ml_collections.ConfigDict({**MODEL, "dtype": "float16"}))
