"""``make_backbone``: the backbone of a ``model`` section, through its family's hook."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ssl_jax.export import load_export, preprocess
from ssl_jax.models import BACKBONES, FAMILIES, RESNETS, VITS, compute_dtype, make_backbone
from ssl_jax.models.build import get_family

MODEL = {"backbone": "resnet18", "width": 4, "stem": "cifar", "zero_init_residual": True}


@pytest.fixture(scope="module")
def images():
    """16 random uint8 images of 12x12 pixels (the spec's input resizes them to 8x8)."""
    return np.random.default_rng(0).integers(0, 256, (16, 12, 12, 3), dtype=np.uint8)


def test_every_registered_backbone_has_exactly_one_family():
    assert FAMILIES["resnet"].factories is RESNETS and FAMILIES["vit"].factories is VITS
    names = [name for family in FAMILIES.values() for name in family.factories]
    assert len(names) == len(set(names)) and list(BACKBONES) == names
    assert get_family("resnet50") is FAMILIES["resnet"]
    assert get_family("vit_giant") is FAMILIES["vit"]
    with pytest.raises(
        ValueError, match=r"Unknown backbone 'resnet101'; valid names: \['bert_base'"
    ):
        make_backbone(ml_collections.ConfigDict({**MODEL, "backbone": "resnet101"}))


def model_config(**fields):
    base = {"width": 64, "stem": "cifar", "zero_init_residual": True}
    return ml_collections.ConfigDict({**base, **fields})


def test_make_backbone_builds_a_vit_from_the_model_section():
    backbone = make_backbone(model_config(backbone="vit_tiny", patch_size=4, img_size=32))
    assert backbone.feature_dim == 192
    params, stats = jax.eval_shape(backbone.init, jax.random.key(0))
    assert params["pos_embed"].shape == (1, 65, 192) and not jax.tree.leaves(stats)
    feats, _ = jax.eval_shape(
        lambda p, s, x: backbone.apply(p, s, x, train=True),
        params,
        stats,
        jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32),
    )
    assert feats.shape == (2, 192)
    # Configs without ViT fields get ViT/16 at 224 pixels; ResNet configs are unchanged.
    params, _ = jax.eval_shape(
        make_backbone(model_config(backbone="vit_small")).init, jax.random.key(0)
    )
    assert params["pos_embed"].shape == (1, 197, 384)
    assert make_backbone(model_config(backbone="resnet18")).feature_dim == 512


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
