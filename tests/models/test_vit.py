"""Tests for ssl_jax.models.vit (and the backbone registry and encoder config for ViTs).

Full-size models are only traced (``nnx.eval_shape`` / ``jax.eval_shape``); values are checked on
small concrete models against a NumPy reference written from the ViT paper's equations.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax.models import (
    BACKBONES,
    RESNETS,
    TEXT_ENCODERS,
    VITS,
    VisionTransformer,
    apply_module,
    get_backbone,
    interpolate_pos_embed,
    split_module,
    vit_base,
    vit_small,
    vit_tiny,
)
from tests.models.util import make_model, num_params

SMALL = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 4}


def abstract(factory, **kwargs):
    return nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(0), **kwargs))


def build(factory, seed=0, **kwargs):
    """``factory(rngs=nnx.Rngs(seed), **kwargs)`` initialised in one compiled program."""
    graphdef, _ = nnx.split(abstract(factory, **kwargs))
    state = jax.jit(lambda: nnx.split(factory(rngs=nnx.Rngs(seed), **kwargs))[1])()
    return nnx.merge(graphdef, state)


@partial(jax.jit, static_argnums=0)
def _forward(graphdef, params, stats, x):
    return apply_module(graphdef, params, stats, x, train=True)


def forward(model, x):
    out, stats = _forward(*split_module(model), x)
    assert not jax.tree.leaves(stats)
    return out


@pytest.fixture(scope="module")
def small_vit():
    return build(VisionTransformer, **SMALL)


@pytest.fixture(scope="module")
def tiny_cifar():
    return build(vit_tiny, patch_size=4, img_size=32, depth=1)


def abstract_call(model, x_shape, fn=lambda m, x: m(x)):
    graphdef, state = nnx.split(model)

    def run(state, x):
        return fn(nnx.merge(graphdef, state, copy=True), x)

    return jax.eval_shape(run, state, jax.ShapeDtypeStruct(x_shape, jnp.float32))


def images(n=2, size=32, seed=0, width=None):
    return jax.random.uniform(jax.random.key(seed), (n, size, width or size, 3))


def np_layer_norm(x, ln, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * np.asarray(ln.scale[...]) + np.asarray(ln.bias[...])


def np_linear(x, linear):
    return x @ np.asarray(linear.kernel[...]) + np.asarray(linear.bias[...])


def np_block(x, block, num_heads):
    n, t, d = x.shape
    hd = d // num_heads
    qkv = np_linear(np_layer_norm(x, block.norm1), block.attn.qkv).reshape(n, t, 3, num_heads, hd)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # (n, heads, t, hd)
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attn = (weights @ v).transpose(0, 2, 1, 3).reshape(n, t, d)
    x = x + np_linear(attn, block.attn.proj)
    h = np_linear(np_layer_norm(x, block.norm2), block.mlp.fc1)
    h = 0.5 * h * (1 + np.vectorize(math.erf)(h / np.sqrt(2)))  # exact GELU
    return x + np_linear(h, block.mlp.fc2)


def np_vit(model, x, num_heads, pos=None):
    """Patchify + linear embedding, [CLS], position embeddings, blocks, pool, final LayerNorm."""
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    p = model.patch_size
    patches = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(n, (h // p) * (w // p), p * p * c)
    kernel = np.asarray(model.patch_embed.kernel[...]).reshape(p * p * c, -1)
    tokens = patches @ kernel + np.asarray(model.patch_embed.bias[...])
    cls = np.broadcast_to(np.asarray(model.cls_token[...]), (n, 1, tokens.shape[-1]))
    pos = np.asarray(model.pos_embed[...] if pos is None else pos)
    tokens = np.concatenate([cls, tokens], axis=1) + pos
    for block in model.blocks:
        tokens = np_block(tokens, block, num_heads)
    pooled = tokens[:, 0] if model.pool == "cls" else tokens[:, 1:].mean(1)
    return np_layer_norm(pooled, model.norm)


def np_keys_cubic(x, a=-0.5):
    """Keys' (1981) cubic convolution kernel; a = -0.5 is jax.image.resize's "bicubic"."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def np_bicubic_matrix(n_in, n_out):
    """(n_out, n_in) weights: half-pixel centres, source position (i + 0.5) n_in / n_out - 0.5,
    no antialiasing; taps beyond the grid are dropped and the rest renormalised (jax's border)."""
    src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    weights = np_keys_cubic(src[:, None] - np.arange(n_in)[None, :])
    return weights / weights.sum(axis=1, keepdims=True)


def np_interpolate_pos_embed(pos, grid):
    """[CLS] kept; the row-major side x side patch grid resized separably to `grid`."""
    pos = np.asarray(pos, np.float64)
    side = round((pos.shape[1] - 1) ** 0.5)
    patches = pos[0, 1:].reshape(side, side, -1)
    rows, cols = np_bicubic_matrix(side, grid[0]), np_bicubic_matrix(side, grid[1])
    patches = np.einsum("ih,hwd,jw->ijd", rows, patches, cols).reshape(1, -1, pos.shape[-1])
    return np.concatenate([pos[:, :1], patches], axis=1)


@pytest.mark.parametrize(
    ("factory", "patch_size", "size", "dim"),
    [
        (vit_tiny, 16, 224, 192),
        (vit_small, 16, 224, 384),
        (vit_base, 16, 224, 768),
        (vit_tiny, 4, 32, 192),
        (vit_small, 4, 32, 384),
    ],
)
def test_output_shape_and_feature_dim(factory, patch_size, size, dim):
    model = abstract(factory, patch_size=patch_size, img_size=size)
    assert model.feature_dim == dim
    assert model.pos_embed.shape == (1, 1 + (size // patch_size) ** 2, dim)
    out = abstract_call(model, (2, size, size, 3))
    assert out.shape == (2, dim) and out.dtype == jnp.float32


@pytest.mark.parametrize(
    ("factory", "expected"),
    [(vit_tiny, 5_524_416), (vit_small, 21_665_664), (vit_base, 85_798_656)],
    ids=["tiny", "small", "base"],
)
def test_param_count_equals_timm_without_head(factory, expected):
    # timm vit_{tiny,small,base}_patch16_224 totals minus the 1000-class head (D * 1000 + 1000):
    # 5,717,416 - 193,000; 22,050,664 - 385,000; 86,567,656 - 769,000. By parts, for width D:
    # patch conv 768 D + D, [CLS] D, positions 197 D, final LayerNorm 2 D, and per block
    # 2 LayerNorms 4 D + qkv 3 D^2 + 3 D + proj D^2 + D + MLP 8 D^2 + 5 D = 12 D^2 + 13 D;
    # D = 384: 295,296 + 384 + 75,648 + 768 + 12 * 1,774,464 = 21,665,664.
    model = abstract(factory)
    d = model.feature_dim
    assert 769 * d + d + 197 * d + 2 * d + 12 * (12 * d * d + 13 * d) == expected
    assert num_params(nnx.state(model, nnx.Param)) == expected
    assert not jax.tree.leaves(split_module(model)[2])  # no batch statistics


@pytest.mark.parametrize(
    ("name", "expected", "patch", "blocks"),
    [
        ("vit_large", 303_301_632, 16, 24),
        ("vit_huge", 630_764_800, 14, 32),
        ("vit_giant", 1_134_564_864, 14, 40),
    ],
)
def test_large_vits_have_the_papers_shapes_and_sizes(name, expected, patch, blocks):
    # timm's vit_large_patch16_224 has 304,326,632 parameters and vit_huge_patch14_224
    # 632,045,800 with their 1000-class heads (D * 1000 + 1000): 303,301,632 and 630,764,800
    # without, the papers' "304 M" and "632 M". By parts (as above; a 14-pixel patch conv has
    # 588 D + D, and 1 + 256 positions): D = 1536, 40 blocks: 1,134,564,864, the "1.1 B" of
    # DINOv2's ViT-g/14, whose SwiGLU MLP (2 x 4096 + 4096 x 1536, biases) and LayerScale add
    # 5,888 per block and its 518-pixel positions 1,113 more tokens: 1.137 B, 0.2 % more.
    model = abstract(BACKBONES[name])
    d = model.feature_dim
    tokens = (224 // patch) ** 2
    by_parts = (3 * patch * patch + 1) * d + d + (1 + tokens) * d + 2 * d
    assert model.patch_size == patch and len(model.blocks) == blocks
    assert by_parts + blocks * (12 * d * d + 13 * d) == expected
    assert num_params(nnx.state(model, nnx.Param)) == expected
    dinov2 = expected + blocks * 5_888 + d + 1_113 * d  # + mask token
    assert abs(expected / dinov2 - 1) < 0.01 if name == "vit_giant" else True


def test_forward_matches_numpy_reference(small_vit):
    x = images()
    out = forward(small_vit, x)
    assert out.shape == (2, 32)
    np.testing.assert_allclose(out, np_vit(small_vit, x, num_heads=4), atol=2e-5)


def test_mean_pool_matches_reference_and_differs_from_cls(small_vit):
    mean_vit = build(VisionTransformer, **SMALL, pool="mean")
    jax.tree.map(
        np.testing.assert_array_equal, nnx.state(mean_vit, nnx.Param), nnx.state(small_vit)
    )
    x = images()
    out = forward(mean_vit, x)
    np.testing.assert_allclose(out, np_vit(mean_vit, x, num_heads=4), atol=2e-5)
    assert not np.allclose(out, forward(small_vit, x), atol=1e-2)


def test_mlp_uses_exact_gelu(small_vit):
    mlp = small_vit.blocks[0].mlp
    x = 30.0 * jax.random.normal(jax.random.key(2), (2, 5, 32))  # fc1 outputs of order 1 to 10
    h = np_linear(np.asarray(x, np.float64), mlp.fc1)
    h = 0.5 * h * (1 + np.vectorize(math.erf)(h / np.sqrt(2)))
    expected = np_linear(h, mlp.fc2)
    np.testing.assert_allclose(mlp(x), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_cifar_variant_forward(tiny_cifar):
    assert tiny_cifar.pos_embed.shape == (1, 65, 192)  # 8 x 8 patches of 4 x 4 pixels + [CLS]
    out = forward(tiny_cifar, images())
    assert out.shape == (2, 192)
    assert bool(jnp.all(jnp.isfinite(out))) and float(jnp.abs(out).max()) > 0


def test_init_as_timm_and_dino(tiny_cifar):
    block = tiny_cifar.blocks[0]
    for linear in (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2):
        kernel = np.asarray(linear.kernel[...])
        assert kernel.std() == pytest.approx(0.02, rel=0.03)
        np.testing.assert_array_equal(linear.bias[...], 0.0)
    # timm's trunc_normal_(std=0.02) cuts at ±2 absolute: samples beyond 2 std do occur.
    assert np.abs(np.asarray(block.mlp.fc1.kernel[...])).max() > 3 * 0.02
    assert np.asarray(tiny_cifar.pos_embed[...]).std() == pytest.approx(0.02, rel=0.05)
    assert 0 < np.asarray(tiny_cifar.cls_token[...]).std() < 0.03
    for ln in (block.norm1, block.norm2, tiny_cifar.norm):
        np.testing.assert_array_equal(ln.scale[...], 1.0)
        np.testing.assert_array_equal(ln.bias[...], 0.0)
        assert ln.epsilon == 1e-6
    fan_in = 4 * 4 * 3  # PyTorch's default Conv2d init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    kernel = np.asarray(tiny_cifar.patch_embed.kernel[...])
    assert kernel.shape == (4, 4, 3, 192)
    assert np.abs(kernel).max() <= 1 / np.sqrt(fan_in)
    assert kernel.std() == pytest.approx(1 / np.sqrt(3 * fan_in), rel=0.03)


def test_interpolate_pos_embed():
    pos = jax.random.normal(jax.random.key(0), (1, 1 + 4 * 4, 3))
    assert interpolate_pos_embed(pos, (4, 4)) is pos
    out = interpolate_pos_embed(pos, (3, 5))
    assert out.shape == (1, 1 + 15, 3)
    np.testing.assert_array_equal(out[:, 0], pos[:, 0])
    # Bicubic (Keys, a = -0.5) reproduces polynomials up to degree 2 where its 4 taps per axis
    # stay inside the grid, up- and downsampling (antialiasing would blur the downsampled one).
    const = jnp.concatenate([pos[:, :1], jnp.full((1, 16, 3), 0.7)], axis=1)
    np.testing.assert_allclose(interpolate_pos_embed(const, (2, 7))[:, 1:], 0.7, atol=1e-6)

    def quadratic(r, c):
        return 0.1 * r**2 - 0.2 * r * c + 0.3 * c - 1.0

    rows, cols = np.meshgrid(np.arange(12.0), np.arange(12.0), indexing="ij")
    pos12 = jnp.concatenate([pos[:, :1, :1], quadratic(rows, cols).reshape(1, 144, 1)], axis=1)
    for size, interior in ((24, slice(3, 21)), (6, slice(1, 5))):
        out = np.asarray(interpolate_pos_embed(pos12, (size, size))[0, 1:, 0])
        src = (np.arange(size) + 0.5) * 12 / size - 0.5  # half-pixel centres on the 12-grid
        expected = quadratic(src[:, None], src[None, :])
        out = out.reshape(size, size)
        np.testing.assert_allclose(out[interior, interior], expected[interior, interior], atol=1e-4)
        assert not np.allclose(out, expected, atol=1e-3)  # the border does differ
    with pytest.raises(ValueError, match="square grid"):
        interpolate_pos_embed(pos[:, :-1], (3, 3))


@pytest.mark.parametrize("grid", [(3, 5), (7, 2), (8, 8), (2, 2)])
def test_interpolate_pos_embed_matches_numpy_bicubic(grid):
    # Non-square grids catch swapped rows and columns; (8, 8) and (2, 2) up- and downsample.
    pos = jax.random.normal(jax.random.key(3), (1, 1 + 4 * 4, 6))
    np.testing.assert_allclose(
        interpolate_pos_embed(pos, grid),
        np_interpolate_pos_embed(pos, grid),
        atol=1e-5,
        err_msg=f"4x4 -> {grid[0]}x{grid[1]} positions differ from the NumPy bicubic reference",
    )


@pytest.mark.parametrize(("height", "width"), [(16, 16), (24, 40)])
def test_other_input_size_interpolates_positions(small_vit, height, width):
    x = images(size=height, width=width)
    out = forward(small_vit, x)
    pos = np_interpolate_pos_embed(small_vit.pos_embed[...], (height // 8, width // 8))
    assert pos.shape == (1, 1 + (height // 8) * (width // 8), 32)
    np.testing.assert_allclose(out, np_vit(small_vit, x, num_heads=4, pos=pos), atol=2e-5)


def test_dino_local_crops_on_vit_small():
    model = abstract(vit_small)
    assert abstract_call(model, (4, 96, 96, 3)).shape == (4, 384)


def test_jit_value_and_grad_through_apply_module(small_vit):
    graphdef, params, stats = split_module(small_vit)
    x = images(n=4)
    w = jax.random.normal(jax.random.key(1), (4, 32))

    @jax.jit
    def loss_and_grad(params):
        def loss(params):
            out, _ = apply_module(graphdef, params, stats, x, train=True)
            return jnp.sum(out * w)

        return jax.value_and_grad(loss)(params)

    loss, grads = loss_and_grad(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert bool(jnp.isfinite(loss))
    for path, g in nnx.to_flat_state(grads):
        assert bool(jnp.all(jnp.isfinite(g[...]))), path
        assert float(jnp.abs(g[...]).max()) > 0, path


def test_same_seed_same_params_other_seed_differs():
    init = jax.jit(lambda key: split_module(VisionTransformer(**SMALL, rngs=nnx.Rngs(key)))[1])
    a, b, c = (init(jax.random.key(seed)) for seed in (0, 0, 1))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    for (path, va), (_, vc) in zip(nnx.to_flat_state(a), nnx.to_flat_state(c), strict=True):
        if path[-1] in ("kernel", "cls_token", "pos_embed"):
            assert not np.allclose(va[...], vc[...]), path


def test_bfloat16_compute_keeps_float32_params_and_output():
    model = abstract(VisionTransformer, **SMALL, dtype=jnp.bfloat16)
    dtypes = {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))}
    assert dtypes == {jnp.dtype(jnp.float32)}
    qkv = abstract_call(model, (2, 5, 32), lambda m, x: m.blocks[0].attn.qkv(x))
    assert qkv.dtype == jnp.bfloat16
    assert abstract_call(model, (2, 32, 32, 3)).dtype == jnp.float32


def test_invalid_arguments_raise(small_vit):
    with pytest.raises(ValueError, match="pool 'max'.*cls.*mean"):
        VisionTransformer(**SMALL, pool="max", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="img_size 30 is not a multiple of patch_size 8"):
        VisionTransformer(**{**SMALL, "img_size": 30}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="embed_dim 32 is not divisible by num_heads 3"):
        VisionTransformer(**{**SMALL, "num_heads": 3}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="20x32 pixels is not a multiple of patch_size 8"):
        small_vit(images(size=20, width=32))


def test_registry():
    assert set(VITS) == {"vit_tiny", "vit_small", "vit_base", "vit_large", "vit_huge", "vit_giant"}
    assert set(BACKBONES) == set(RESNETS) | set(VITS) | set(TEXT_ENCODERS)
    model = abstract(lambda rngs: get_backbone("vit_tiny", patch_size=4, img_size=32, rngs=rngs))
    assert isinstance(model, VisionTransformer) and model.feature_dim == 192
    params = jax.eval_shape(lambda: make_model("vit_small", seed=0, depth=1)[1])
    assert params["pos_embed"].shape == (1, 197, 384)
    names = str(sorted(BACKBONES))
    with pytest.raises(ValueError, match="'vit_enormous'.*" + names.replace("[", r"\[")):
        get_backbone("vit_enormous", rngs=nnx.Rngs(0))


# MAE-style keep indices, return_all, dropout and drop path.


def np_vit_tokens(model, x, num_heads, keep=None):
    """``np_vit`` returning every block's output and the normed tokens, keeping ``keep`` patches
    (MAE: position embeddings added to all patches, then the kept ones gathered)."""
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    p = model.patch_size
    patches = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(n, (h // p) * (w // p), p * p * c)
    kernel = np.asarray(model.patch_embed.kernel[...]).reshape(p * p * c, -1)
    pos = np.asarray(model.pos_embed[...])
    tokens = patches @ kernel + np.asarray(model.patch_embed.bias[...]) + pos[:, 1:]
    if keep is not None:
        tokens = np.stack([tokens[i, keep[i]] for i in range(n)])
    cls = np.asarray(model.cls_token[...]) + pos[:, :1]
    tokens = np.concatenate([np.broadcast_to(cls, (n, 1, tokens.shape[-1])), tokens], axis=1)
    out = {}
    for i, block in enumerate(model.blocks):
        tokens = np_block(tokens, block, num_heads)
        out[f"block{i + 1}"] = tokens
    pooled = tokens[:, 0] if model.pool == "cls" else tokens[:, 1:].mean(1)
    return out | {
        "tokens": np_layer_norm(tokens, model.norm),
        "pooled": np_layer_norm(pooled, model.norm),
    }


def test_return_all_matches_numpy_reference(small_vit):
    x = images()
    graphdef, params, stats = split_module(small_vit)
    out, _ = apply_module(graphdef, params, stats, x, train=True, return_all=True)
    assert set(out) == {"tokens", "block1", "block2", "pooled"}
    assert out["tokens"].shape == out["block2"].shape == (2, 17, 32)
    assert all(v.dtype == jnp.float32 for v in out.values())
    expected = np_vit_tokens(small_vit, x, num_heads=4)
    for name, value in expected.items():
        np.testing.assert_allclose(out[name], value, atol=2e-5, err_msg=name)
    np.testing.assert_array_equal(out["pooled"], forward(small_vit, x))
    np.testing.assert_array_equal(out["tokens"][:, 0], out["pooled"])  # pool="cls"


def test_keep_all_indices_in_order_equals_default(small_vit):
    x = images()
    graphdef, params, stats = split_module(small_vit)
    keep = np.tile(np.arange(16), (2, 1))
    default, _ = apply_module(graphdef, params, stats, x, train=True, return_all=True)
    kept, _ = apply_module(graphdef, params, stats, x, train=True, keep_indices=keep)
    np.testing.assert_allclose(kept, default["pooled"], rtol=1e-6, atol=1e-6)
    kept_all, _ = apply_module(
        graphdef, params, stats, x, train=True, keep_indices=keep, return_all=True
    )
    jax.tree.map(partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-6), kept_all, default)


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_keep_indices_matches_numpy_reference(pool):
    model = build(VisionTransformer, **SMALL, pool=pool)
    x = images(n=3)
    # A different subset per image, in shuffled order (MAE keeps ids_shuffle[:, :K]).
    rng = np.random.default_rng(0)
    keep = np.stack([rng.permutation(16)[:5] for _ in range(3)]).astype(np.int32)
    out, _ = apply_module(
        *split_module(model), x, train=True, keep_indices=jnp.asarray(keep), return_all=True
    )
    assert out["tokens"].shape == out["block1"].shape == (3, 6, 32)
    expected = np_vit_tokens(model, x, num_heads=4, keep=keep)
    for name, value in expected.items():
        np.testing.assert_allclose(out[name], value, atol=2e-5, err_msg=name)
    # Kept tokens are computed as on their own: the same as the full sequence only in block 0's
    # token-wise layers, not after attention (which now sees 1 + K tokens).
    full = np_vit_tokens(model, x, num_heads=4)
    assert not np.allclose(out["pooled"], full["pooled"], atol=1e-3)


def test_keep_indices_of_wrong_shape_or_dtype_raise(small_vit):
    x = images()
    with pytest.raises(ValueError, match=r"keep_indices must have shape \(N, K\) = \(2, K\)"):
        small_vit(x, keep_indices=np.arange(4))
    with pytest.raises(ValueError, match=r"got shape \(3, 4\)"):
        small_vit(x, keep_indices=np.zeros((3, 4), np.int32))
    with pytest.raises(ValueError, match="integer patch indices in 0..15"):
        small_vit(x, keep_indices=np.zeros((2, 4), np.float32))


def test_drop_path_rates_increase_linearly_per_block():
    model = abstract(VisionTransformer, **{**SMALL, "depth": 5}, drop_path_rate=0.2)
    rates = [block.drop_path_rate for block in model.blocks]
    np.testing.assert_allclose(rates, [0.0, 0.05, 0.1, 0.15, 0.2])
    one = abstract(VisionTransformer, **{**SMALL, "depth": 1}, drop_path_rate=0.2)
    assert [block.drop_path_rate for block in one.blocks] == [0.0]  # timm's linspace(0, r, 1)
    with pytest.raises(ValueError, match=r"drop_path_rate must lie in \[0, 1\], got 1.5"):
        VisionTransformer(**SMALL, drop_path_rate=1.5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"drop_rate must lie in \[0, 1\), got 1.0"):
        VisionTransformer(**SMALL, drop_rate=1.0, rngs=nnx.Rngs(0))


def small_graphdef(**rates):
    """The graphdef of the ``SMALL`` ViT with ``rates``, which share ``small_vit``'s parameters."""
    model = abstract(VisionTransformer, **SMALL, **rates)
    plain = abstract(VisionTransformer, **SMALL)
    assert jax.tree.structure(nnx.state(model)) == jax.tree.structure(nnx.state(plain))
    return split_module(model)[0]


NOISY = {"drop_rate": 0.1, "drop_path_rate": 0.3}


def rbg_key(seed):
    """A key of the "rbg" PRNG: on CPU, XLA compiles threefry bits for a dropout mask in about
    0.6 s, and RngBitGenerator's in 0.1 s. The model works with any key."""
    return jax.random.key(seed, impl="rbg")


def test_dropout_and_drop_path_off_in_eval_mode_or_at_zero_rates(small_vit):
    graphdef, params, stats = split_module(small_vit)
    noisy_graphdef = small_graphdef(**NOISY)
    key = rbg_key(0)

    @jax.jit  # one program for all variants: a compilation each would cost seconds
    def variants(params, x):
        return [
            apply_module(graphdef, params, stats, x, train=True)[0],
            apply_module(graphdef, params, stats, x, train=True, rngs=key)[0],
            apply_module(noisy_graphdef, params, stats, x, train=False)[0],
            apply_module(noisy_graphdef, params, stats, x, train=False, rngs=key)[0],
        ]

    default, *others = variants(params, images())
    for out in others:
        np.testing.assert_array_equal(out, default)


@pytest.mark.slow  # about 3 s
def test_train_mode_noise_depends_on_the_key_only(small_vit):
    graphdef, params, stats = split_module(small_vit)
    noisy_graphdef = small_graphdef(**NOISY)

    @jax.jit  # the key is traced: one compilation for all keys
    def run(params, x, key):
        noisy = apply_module(noisy_graphdef, params, stats, x, train=True, rngs=key)[0]
        return noisy, apply_module(graphdef, params, stats, x, train=True)[0]

    x = images(n=4)
    (a, default), (b, _), (c, _) = (run(params, x, rbg_key(seed)) for seed in (0, 0, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c, atol=1e-4)
    assert not np.allclose(a, default, atol=1e-4)
    assert bool(jnp.all(jnp.isfinite(a)))


def test_missing_key_in_train_mode_raises(small_vit):
    _, params, stats = split_module(small_vit)
    graphdef = small_graphdef(**NOISY)
    x = images()
    with pytest.raises(ValueError, match=r"drop_rate=0.1 and drop_path_rate=0.3 .* pass rngs="):
        apply_module(graphdef, params, stats, x, train=True)
    model = nnx.merge(graphdef, params, stats)
    with pytest.raises(ValueError, match="needs a random key"):
        model(x)  # a freshly built module is in train mode, as nnx.Dropout


def test_drop_path_mask_is_per_sample_and_scaled():
    from ssl_jax.models.vit import drop_path, dropout

    x = jnp.ones((4000, 3, 2))
    y = np.asarray(drop_path(x, 0.3, jax.random.key(0)))
    kept = y[:, 0, 0] != 0
    assert np.all(y == y[:, :1, :1])  # one draw per sample, shared by its tokens and features
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)  # scaled by 1 / keep_prob
    assert abs((~kept).mean() - 0.3) < 0.04  # binomial std 0.007
    np.testing.assert_array_equal(drop_path(x, 1.0, jax.random.key(0)), 0.0)
    assert drop_path(x, 0.0, jax.random.key(0)) is x
    # Dropout draws per element.
    y = np.asarray(dropout(x, 0.25, jax.random.key(1)))
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    assert not np.all(y == y[:, :1, :1])


@pytest.mark.slow  # about 3 s
def test_drop_path_drops_whole_residual_branches_of_the_last_block(small_vit):
    # depth 2: block 1 has rate 0, block 2 the full drop_path_rate; no dropout. Each sample's
    # block-2 output is one of four cases: attention and MLP branches kept (scaled 1 / 0.5)
    # or dropped, independently, each with probability 1/4.
    _, params, stats = split_module(small_vit)
    half = small_graphdef(drop_path_rate=0.5)

    @jax.jit
    def run(params, x, key):
        out = apply_module(half, params, stats, x, train=True, return_all=True, rngs=key)[0]
        model = nnx.merge(half, params, stats, copy=True)
        model.eval()
        h = model(x, return_all=True)["block1"]
        block = model.blocks[1]
        cases = []
        for keep_attn in (0.0, 2.0):
            y = h + keep_attn * block.attn(block.norm1(h))
            for keep_mlp in (0.0, 2.0):
                cases.append(y + keep_mlp * block.mlp(block.norm2(y)))
        return out, h, jnp.stack(cases)  # cases: (4, N, T, D)

    x = images(n=400)
    out, clean_block1, cases = run(params, x, jax.random.key(3))
    np.testing.assert_allclose(out["block1"], clean_block1, rtol=1e-6, atol=1e-6)
    err = np.abs(np.asarray(cases) - np.asarray(out["block2"])[None]).max(axis=(2, 3))  # (4, N)
    assert np.all(err.min(axis=0) < 1e-5)  # every sample is one of the four cases
    counts = np.bincount(err.argmin(axis=0), minlength=4) / len(x)
    np.testing.assert_allclose(counts, 0.25, atol=0.09)  # binomial std 0.022
