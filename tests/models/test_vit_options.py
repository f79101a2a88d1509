"""Tests for the optional ViT parts: mask token, register tokens, LayerScale.

Each is checked against a NumPy (float64) transcription of iBOT's / DINOv2's forward pass
(mask before position embeddings; registers after [CLS], without position embeddings;
``x + ls(branch)``), and the default model against the same model with the options off.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax.models import VisionTransformer, apply_module, split_module
from tests.models.test_vit import SMALL, images, np_layer_norm, np_linear

OPTIONS = {"mask_token": True, "num_registers": 2, "layer_scale": 0.3}


def build(factory, seed=0, **kwargs):
    """Eager construction: cheaper than compiling the initialisation for these tiny models."""
    return factory(rngs=nnx.Rngs(seed), **kwargs)


def flat_params(model):
    """``{"['blocks'][0]['ls1']['gamma']": array, ...}`` of the model's parameters."""
    _, params, _ = split_module(model)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return {jax.tree_util.keystr(p).removesuffix(".value"): v for p, v in leaves}


@pytest.fixture(scope="module")
def default_vit():
    return build(VisionTransformer, **SMALL)


@pytest.fixture(scope="module")
def options_vit():
    model = build(VisionTransformer, **SMALL, **OPTIONS)
    # Non-trivial values for the zero / tiny / constant initialisations, so the reference
    # comparison sees them.
    keys = jax.random.split(jax.random.key(7), 2 + 2 * len(model.blocks))
    model.mask_token[...] = jax.random.normal(keys[0], model.mask_token.shape)
    model.reg_token[...] = jax.random.normal(keys[1], model.reg_token.shape)
    for i, block in enumerate(model.blocks):
        block.ls1.gamma[...] = jax.random.uniform(keys[2 + 2 * i], (32,), minval=0.5, maxval=2)
        block.ls2.gamma[...] = jax.random.uniform(keys[3 + 2 * i], (32,), minval=0.5, maxval=2)
    return model


def np_block(x, block, num_heads):
    n, t, d = x.shape
    hd = d // num_heads
    qkv = np_linear(np_layer_norm(x, block.norm1), block.attn.qkv).reshape(n, t, 3, num_heads, hd)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attn = np_linear((weights @ v).transpose(0, 2, 1, 3).reshape(n, t, d), block.attn.proj)
    gamma1 = 1.0 if block.ls1 is None else np.asarray(block.ls1.gamma[...])
    x = x + gamma1 * attn
    h = np_linear(np_layer_norm(x, block.norm2), block.mlp.fc1)
    h = 0.5 * h * (1 + np.vectorize(math.erf)(h / np.sqrt(2)))
    gamma2 = 1.0 if block.ls2 is None else np.asarray(block.ls2.gamma[...])
    return x + gamma2 * np_linear(h, block.mlp.fc2)


def np_vit(model, x, num_heads, mask=None):
    """iBOT/DINOv2 order: embed, mask, [CLS], + pos, registers after [CLS], blocks, norm."""
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    p = model.patch_size
    patches = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(n, (h // p) * (w // p), p * p * c)
    kernel = np.asarray(model.patch_embed.kernel[...]).reshape(p * p * c, -1)
    tokens = patches @ kernel + np.asarray(model.patch_embed.bias[...])
    if mask is not None:
        tokens = np.where(mask[:, :, None], np.asarray(model.mask_token[...]), tokens)
    cls = np.broadcast_to(np.asarray(model.cls_token[...]), (n, 1, tokens.shape[-1]))
    tokens = np.concatenate([cls, tokens], axis=1) + np.asarray(model.pos_embed[...])
    r = model.num_registers
    if r:
        reg = np.broadcast_to(np.asarray(model.reg_token[...]), (n, r, tokens.shape[-1]))
        tokens = np.concatenate([tokens[:, :1], reg, tokens[:, 1:]], axis=1)
    for block in model.blocks:
        tokens = np_block(tokens, block, num_heads)
    normed = np_layer_norm(tokens, model.norm)
    return {
        "tokens": np.concatenate([normed[:, :1], normed[:, 1 + r :]], axis=1),
        "registers": normed[:, 1 : 1 + r],
    }


def run(model, x, **kwargs):
    out, _ = apply_module(*split_module(model), x, train=True, return_all=True, **kwargs)
    return out


def random_mask(n=2, num_patches=16, seed=0):
    return np.random.default_rng(seed).random((n, num_patches)) < 0.4


def test_defaults_add_no_parameters_and_options_draw_after_the_others(default_vit):
    default = flat_params(default_vit)
    off = flat_params(
        build(VisionTransformer, **SMALL, mask_token=False, num_registers=0, layer_scale=None)
    )
    assert sorted(off) == sorted(default)
    for name, value in default.items():
        np.testing.assert_array_equal(off[name], value, err_msg=name)
    on = build(VisionTransformer, **SMALL, **OPTIONS)
    on_flat = flat_params(on)
    assert set(on_flat) - set(default) == {
        "['mask_token']",
        "['reg_token']",
        *(f"['blocks'][{i}]['ls{j}']['gamma']" for i in range(2) for j in (1, 2)),
    }
    for name, value in default.items():
        np.testing.assert_array_equal(on_flat[name], value, err_msg=name)
    assert on.mask_token.shape == (1, 1, 32) and not np.any(on.mask_token[...])
    assert on.reg_token.shape == (1, 2, 32)
    assert 0 < np.std(on.reg_token[...]) < 1e-5
    np.testing.assert_array_equal(on.blocks[1].ls2.gamma[...], np.full(32, 0.3, np.float32))


def test_all_options_match_numpy_reference(options_vit):
    x, mask = images(), random_mask()
    out = run(options_vit, x, token_mask=jnp.asarray(mask))
    assert out["tokens"].shape == out["block2"].shape == (2, 17, 32)
    assert out["registers"].shape == (2, 2, 32)
    expected = np_vit(options_vit, x, num_heads=4, mask=mask)
    np.testing.assert_allclose(out["tokens"], expected["tokens"], atol=5e-5)
    np.testing.assert_allclose(out["registers"], expected["registers"], atol=5e-5)
    np.testing.assert_array_equal(out["pooled"], out["tokens"][:, 0])


def test_unit_layer_scale_is_the_default_block(default_vit):
    x = images()
    model = build(VisionTransformer, **SMALL, layer_scale=1.0)
    default = run(default_vit, x)
    jax.tree.map(np.testing.assert_array_equal, run(model, x), default)
    # Not a no-op at other values.
    for block in model.blocks:
        block.ls1.gamma[...] = jnp.full((32,), 1e-5)
        block.ls2.gamma[...] = jnp.full((32,), 1e-5)
    assert not np.allclose(run(model, x)["pooled"], default["pooled"], atol=1e-3)


def test_masked_patches_ignore_their_pixels(options_vit):
    x, mask = images(), random_mask()
    out = run(options_vit, x, token_mask=jnp.asarray(mask))
    # Overwrite the pixels of every masked 8x8 patch: nothing downstream may change.
    pixel_mask = np.repeat(np.repeat(mask.reshape(2, 4, 4), 8, 1), 8, 2)[..., None]
    other = jnp.where(pixel_mask, images(seed=1), x)
    jax.tree.map(np.testing.assert_array_equal, run(options_vit, other, token_mask=mask), out)
    none = run(options_vit, x, token_mask=np.zeros((2, 16), bool))
    jax.tree.map(np.testing.assert_array_equal, none, run(options_vit, x))


def test_mask_token_gets_gradient_only_through_masked_positions(options_vit):
    graphdef, params, stats = split_module(options_vit)
    x = images()

    def loss(params, mask):
        out, _ = apply_module(graphdef, params, stats, x, train=True, token_mask=mask)
        return jnp.sum(out**2)

    grads = jax.grad(loss)(params, jnp.asarray(random_mask()))
    assert np.any(grads["mask_token"][...] != 0) and np.any(grads["reg_token"][...] != 0)
    grads = jax.grad(loss)(params, jnp.zeros((2, 16), bool))
    np.testing.assert_array_equal(grads["mask_token"][...], 0.0)


def test_registers_are_left_out_of_outputs_and_mean_pool(options_vit):
    x = images(n=3)
    model = build(VisionTransformer, **SMALL, num_registers=3, pool="mean")
    out = run(model, x)
    assert set(out) == {"tokens", "block1", "block2", "pooled", "registers"}
    assert out["tokens"].shape == (3, 17, 32) and out["registers"].shape == (3, 3, 32)
    tokens = np.asarray(out["block2"], np.float64)
    np.testing.assert_allclose(
        out["pooled"], np_layer_norm(tokens[:, 1:].mean(1), model.norm), atol=2e-5
    )
    # With keep_indices the registers sit between [CLS] and the kept patches, outputs drop them.
    keep = jnp.asarray(np.tile(np.arange(0, 16, 2), (3, 1)))
    kept = run(options_vit, x, keep_indices=keep, token_mask=random_mask(3))
    assert kept["tokens"].shape == kept["block1"].shape == (3, 9, 32)


def test_invalid_options_raise(default_vit, options_vit):
    x = images()
    with pytest.raises(ValueError, match="build the VisionTransformer with mask_token=True"):
        default_vit(x, token_mask=random_mask())
    with pytest.raises(ValueError, match=r"bool array of shape \(N, L\) = \(2, 16\)"):
        options_vit(x, token_mask=random_mask().astype(np.int32))
    with pytest.raises(ValueError, match=r"got bool of shape \(2, 15\)"):
        options_vit(x, token_mask=random_mask()[:, :15])
    with pytest.raises(ValueError, match="num_registers must be a non-negative int"):
        VisionTransformer(**SMALL, num_registers=-1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="layer_scale must be None"):
        VisionTransformer(**SMALL, layer_scale=0.0, rngs=nnx.Rngs(0))
