"""Tests for ssl_jax.models.resnet.

Eager initialisation compiles one random-normal program per kernel shape (about a second each on
2 loaded cores), so shape and count checks trace abstract models (``nnx.eval_shape`` and
``jax.eval_shape``) and the value checks share two small concrete models.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax.models import (
    BACKBONES,
    BasicBlock,
    Bottleneck,
    ResNet,
    apply_module,
    get_backbone,
    resnet18,
    resnet34,
    resnet50,
    split_module,
)
from tests.models.util import make_model, num_params


@pytest.fixture(scope="module")
def resnet18_w8():
    return resnet18(width=8, stem="cifar", rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def bottleneck_resnet_w8():
    return ResNet(stage_sizes=(2, 1), block=Bottleneck, width=8, stem="cifar", rngs=nnx.Rngs(0))


def abstract(factory, **kwargs):
    return nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(0), **kwargs))


def abstract_counts(factory, **kwargs):
    """(params, batch_stats) element counts without allocating the weights."""
    model = abstract(factory, **kwargs)
    return num_params(nnx.state(model, nnx.Param)), num_params(nnx.state(model, nnx.BatchStat))


def abstract_call(model, fn, x_shape, x_dtype=jnp.float32):
    """Output ShapeDtypeStruct of ``fn(model, x)`` for an abstract ``model``: tracing only."""
    graphdef, state = nnx.split(model)

    def run(state, x):
        return fn(nnx.merge(graphdef, state, copy=True), x)

    return jax.eval_shape(run, state, jax.ShapeDtypeStruct(x_shape, x_dtype))


def train_forward(model, x):
    model.train()
    return model(x)


@pytest.mark.parametrize(
    ("factory", "expansion"),
    [(resnet18, 1), (resnet34, 1), (resnet50, 4)],
    ids=["resnet18", "resnet34", "resnet50"],
)
@pytest.mark.parametrize(("stem", "size"), [("cifar", 32), ("imagenet", 64)])
def test_output_shape_and_feature_dim(factory, expansion, stem, size):
    width = 8
    model = abstract(factory, width=width, stem=stem)
    out = abstract_call(model, train_forward, (2, size, size, 3))
    assert model.feature_dim == 8 * width * expansion
    assert out.shape == (2, model.feature_dim)
    assert out.dtype == jnp.float32


def test_forward_is_finite(resnet18_w8, bottleneck_resnet_w8):
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    for model in (resnet18_w8, bottleneck_resnet_w8):
        out, _ = apply_module(*split_module(model), x, train=True)
        assert out.shape == (2, model.feature_dim)
        assert bool(jnp.all(jnp.isfinite(out))) and float(jnp.abs(out).max()) > 0
    assert bottleneck_resnet_w8.feature_dim == 2 * 8 * 4


@pytest.mark.parametrize(("stem", "size", "kernel"), [("imagenet", 8, 7), ("cifar", 32, 3)])
def test_stem_resolution(stem, size, kernel):
    model = abstract(resnet18, width=8, stem=stem)
    assert model.conv1.kernel.shape == (kernel, kernel, 3, 8)

    def stem_fn(model, x):
        h = nnx.relu(model.bn1(model.conv1(x)))
        if stem == "imagenet":
            h = nnx.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        return h

    assert abstract_call(model, stem_fn, (1, 32, 32, 3)).shape == (1, size, size, 8)


@pytest.mark.parametrize(
    ("factory", "expected_params", "expected_bn_channels"),
    [(resnet18, 11_176_512, 4_800), (resnet34, 21_284_672, 8_512), (resnet50, 23_508_032, 26_560)],
    ids=["resnet18", "resnet34", "resnet50"],
)
def test_param_count_equals_torchvision_without_fc(factory, expected_params, expected_bn_channels):
    # torchvision totals minus fc: 11,689,512 - 513,000; 21,797,672 - 513,000;
    # 25,557,032 - 2,049,000. BN running mean/var are batch_stats, not params.
    params, stats = abstract_counts(factory, width=64, stem="imagenet")
    assert params == expected_params
    assert stats == 2 * expected_bn_channels


def test_width_scales_params_quadratically():
    wide, _ = abstract_counts(resnet18, width=64)
    narrow, _ = abstract_counts(resnet18, width=16)
    # Convolutions dominate and scale with width**2; the stem and BN scale linearly.
    assert narrow / wide == pytest.approx(1 / 16, rel=0.02)
    assert abstract_counts(resnet18, width=32)[0] / wide == pytest.approx(1 / 4, rel=0.02)
    assert abstract(resnet18, width=16).feature_dim == 128


def test_in_channels():
    model = abstract(resnet18, width=8, stem="cifar", in_channels=1)
    assert model.conv1.kernel.shape == (3, 3, 1, 8)
    assert abstract_call(model, train_forward, (2, 16, 16, 1)).shape == (2, 64)


def test_bfloat16_compute_keeps_float32_params_and_output():
    model = abstract(resnet18, width=8, stem="cifar", dtype=jnp.bfloat16)
    dtypes = {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))}
    assert dtypes == {jnp.dtype(jnp.float32)}
    assert abstract_call(model, lambda m, x: m.conv1(x), (2, 16, 16, 3)).dtype == jnp.bfloat16
    assert abstract_call(model, train_forward, (2, 16, 16, 3)).dtype == jnp.float32


def blocks(model):
    return [block for stage in model.stages for block in stage]


def test_zero_init_residual_sets_last_bn_scale_to_zero(resnet18_w8, bottleneck_resnet_w8):
    for model in (resnet18_w8, bottleneck_resnet_w8):
        for block in blocks(model):
            np.testing.assert_array_equal(block.last_bn.scale[...], 0.0)
            bns = [m for _, m in nnx.iter_modules(block) if isinstance(m, nnx.BatchNorm)]
            others = [bn for bn in bns if bn is not block.last_bn]
            assert len(others) >= 1
            for bn in others:
                np.testing.assert_array_equal(bn.scale[...], 1.0)
                np.testing.assert_array_equal(bn.bias[...], 0.0)
    plain = resnet18(width=8, stem="cifar", zero_init_residual=False, rngs=nnx.Rngs(0))
    for block in blocks(plain):
        np.testing.assert_array_equal(block.last_bn.scale[...], 1.0)


@pytest.mark.parametrize("block_cls", [BasicBlock, Bottleneck])
@pytest.mark.parametrize("strides", [1, 2])
def test_zero_init_block_is_relu_of_shortcut(block_cls, strides):
    in_features = 4 * block_cls.expansion
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, in_features))
    block = block_cls(in_features, 4, strides=strides, rngs=nnx.Rngs(0))
    assert (block.shortcut is None) == (strides == 1)
    residual = x if block.shortcut is None else block.shortcut(x)
    np.testing.assert_allclose(block(x), nnx.relu(residual), atol=1e-6)
    plain = block_cls(in_features, 4, strides=strides, zero_init_residual=False, rngs=nnx.Rngs(0))
    assert not np.allclose(plain(x), nnx.relu(residual), atol=1e-3)


def test_projection_shortcut_only_where_shape_changes():
    model = abstract(resnet50, width=8)
    has_shortcut = [[b.shortcut is not None for b in stage] for stage in model.stages]
    # Bottleneck: the first block of every stage changes the channel count (8 -> 32, ...).
    assert has_shortcut == [[True] + [False] * (n - 1) for n in (3, 4, 6, 3)]
    assert model.stages[0][0].shortcut.conv.strides == (1, 1)
    assert model.stages[1][0].conv2.strides == (2, 2)  # v1.5: stride on the 3x3 conv
    model = abstract(resnet18, width=8)
    has_shortcut = [[b.shortcut is not None for b in stage] for stage in model.stages]
    assert has_shortcut == [[False, False], [True, False], [True, False], [True, False]]
    assert model.stages[1][0].shortcut.conv.kernel.shape == (1, 1, 8, 16)
    assert model.stages[1][0].shortcut.conv.strides == (2, 2)


def test_conv_init_is_untruncated_he_normal_fan_out(resnet18_w8):
    kernel = np.asarray(resnet18_w8.stages[3][1].conv1.kernel[...])  # 3x3, 64 -> 64
    std = np.sqrt(2.0 / (3 * 3 * 64))
    assert kernel.std() == pytest.approx(std, rel=0.02)
    assert abs(kernel.mean()) < 0.02 * std
    assert np.abs(kernel).max() > 3 * std  # a truncated normal stops at 2 std
    assert resnet18_w8.conv1.bias is None


def test_same_seed_same_params_other_seed_differs():
    _, a, sa = make_model(resnet18, seed=0, width=8, stem="cifar")
    _, b, sb = make_model(resnet18, seed=0, width=8, stem="cifar")
    _, c, _ = make_model(resnet18, seed=1, width=8, stem="cifar")
    jax.tree.map(np.testing.assert_array_equal, a, b)
    jax.tree.map(np.testing.assert_array_equal, sa, sb)
    kernels_a = [x for p, x in nnx.to_flat_state(a) if p[-1] == "kernel"]
    kernels_c = [x for p, x in nnx.to_flat_state(c) if p[-1] == "kernel"]
    assert len(kernels_a) == 20  # stem + 8 blocks x 2 + 3 shortcuts
    for ka, kc in zip(kernels_a, kernels_c, strict=True):
        assert not np.allclose(ka[...], kc[...])


def test_unknown_stem_raises():
    with pytest.raises(ValueError, match="stem 'tiny'.*imagenet.*cifar"):
        resnet18(stem="tiny", rngs=nnx.Rngs(0))


def test_bad_stage_sizes_raise():
    with pytest.raises(ValueError, match="stage_sizes"):
        ResNet(stage_sizes=(), block=BasicBlock, rngs=nnx.Rngs(0))


def test_registry():
    assert {"resnet18", "resnet34", "resnet50"} <= set(BACKBONES)
    model = abstract(partial(get_backbone, "resnet50"), width=8, stem="cifar")
    assert isinstance(model, ResNet) and model.feature_dim == 256 and model.stem == "cifar"
    with pytest.raises(ValueError, match=r"'resnet101'.*'resnet18', 'resnet34', 'resnet50', 'vit_"):
        get_backbone("resnet101", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="resnet101"):
        make_model("resnet101", seed=0)


@pytest.mark.parametrize(("stem", "size", "stem_size"), [("cifar", 16, 16), ("imagenet", 32, 8)])
def test_return_all_shapes(stem, size, stem_size):
    model = abstract(resnet18, width=4, stem=stem)
    out = abstract_call(model, lambda m, x: m(x, return_all=True), (2, size, size, 3))
    assert set(out) == {"stem", "stage1", "stage2", "stage3", "stage4", "pooled"}
    assert out["stem"].shape == (2, stem_size, stem_size, 4)
    for i in range(4):
        side = stem_size // 2**i
        assert out[f"stage{i + 1}"].shape == (2, side, side, 4 * 2**i), i
    assert out["pooled"].shape == (2, model.feature_dim) == (2, 32)
    assert all(v.dtype == jnp.float32 for v in out.values())
    bottleneck = abstract(resnet50, width=4, stem=stem)
    out = abstract_call(bottleneck, lambda m, x: m(x, return_all=True), (2, size, size, 3))
    assert out["stage1"].shape == (2, stem_size, stem_size, 16)  # 4 * width channels
    assert out["stage4"].shape[-1] == bottleneck.feature_dim == 128


@pytest.mark.parametrize("train", [False, True])
def test_return_all_pooled_equals_default_output(resnet18_w8, train):
    graphdef, params, stats = split_module(resnet18_w8)
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    default, default_stats = apply_module(graphdef, params, stats, x, train=train)
    out, out_stats = apply_module(graphdef, params, stats, x, train=train, return_all=True)
    np.testing.assert_array_equal(out["pooled"], default)
    jax.tree.map(np.testing.assert_array_equal, out_stats, default_stats)
    assert out["stem"].shape == (2, 16, 16, 8)
    assert float(out["stem"].min()) >= 0.0  # after the ReLU
    # Each stage's map is its blocks applied to the previous one; pooled is the last one's mean.
    np.testing.assert_allclose(out["pooled"], out["stage4"].mean(axis=(1, 2)), rtol=1e-6)
    if not train:

        @jax.jit
        def run_stages(params, stats, maps):
            model = nnx.merge(graphdef, params, stats, copy=True)
            model.eval()
            outputs = []
            for stage, previous in zip(model.stages, maps, strict=True):
                for block in stage:
                    previous = block(previous)
                outputs.append(previous)
            return outputs

        inputs = [out[name] for name in ("stem", "stage1", "stage2", "stage3")]
        for i, expected in enumerate(run_stages(params, stats, inputs)):
            np.testing.assert_allclose(out[f"stage{i + 1}"], expected, rtol=1e-5, atol=1e-5)
