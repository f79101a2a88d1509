"""``load_export``, ``Export`` and the frozen-feature functions.

The tests that need a checkpoint use the tiny pretraining run shared with
tests/programs/test_pretrain.py (the ``pretrained`` fixture of tests/conftest.py).
"""

import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from ssl_jax import checkpoint
from ssl_jax.augment import eval_view
from ssl_jax.augment.from_config import eval_settings
from ssl_jax.export import Export, load_export, make_encode_fn, make_spec
from ssl_jax.models import ModuleDef, VisionTransformer, make_backbone, split_module
from ssl_jax.parallel import make_mesh
from tests.export.test_spec import MODEL, RGB, spec_fields
from tests.programs.tiny import tiny_pretrain_config


@pytest.fixture(scope="module")
def images():
    """16 random uint8 images of 12x12 pixels: encode resizes them to the spec's 8x8."""
    return np.random.default_rng(0).integers(0, 256, (16, 12, 12, 3), dtype=np.uint8)


def copy_run(pretrained, tmp_path) -> str:
    workdir = str(tmp_path / "run")
    shutil.copytree(pretrained[0], workdir)
    return workdir


def reference_encode(run_dir, images):
    """Features computed without the spec: the backbone of the run config's ``model``, the
    input of its ``augment`` recipe's evaluation view (``eval_view``), restored by hand."""
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


def test_load_export_encodes_as_the_run_config_says(pretrained, images):
    workdir, _ = pretrained
    export = load_export(workdir)
    assert export.step == 6 and export.feature_dim == 32 and export.random_init_seed is None
    assert set(export.arrays) == {"params", "batch_stats"}
    want = reference_encode(workdir, images)
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


def test_a_checkpoint_without_a_spec_is_a_checkpoint_error(pretrained, tmp_path):
    workdir = copy_run(pretrained, tmp_path)
    shutil.rmtree(f"{workdir}/checkpoints/6/encoder_spec")
    with pytest.raises(checkpoint.CheckpointError, match="checkpoints/6 has no encoder_spec item"):
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
