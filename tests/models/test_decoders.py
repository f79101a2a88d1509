"""Tests for ssl_jax.models.decoders: MAE's decoder and the upsampling conv decoder.

Both run through ``module_def`` (pure ``init`` / ``apply``) at tiny sizes: a 4x4 patch grid,
decoder width 16, 2 heads; a conv decoder of width 8. Values are checked against NumPy written
from MAE's formulas (sine-cosine table, depth-0 decoder) and against invariances of the
un-shuffle.
"""

import doctest
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax.models import decoders, module_def
from ssl_jax.models.decoders import ConvDecoder, MAEDecoder, sincos_pos_embed_2d
from ssl_jax.pretext.patches import random_masking

GRID = (4, 4)
L = 16
ENC = 12
MAE_KW = {
    "num_patches": L,
    "encoder_dim": ENC,
    "decoder_dim": 16,
    "num_heads": 2,
    "patch_dim": 12,
    "grid_size": GRID,
}


def fast_key(seed):
    """An "unsafe_rbg" key: far cheaper initialisers to compile on CPU than threefry's."""
    return jax.random.key(seed, impl="unsafe_rbg")


def make_mae(depth):
    dec = module_def(lambda rngs: MAEDecoder(**MAE_KW, depth=depth, rngs=rngs))
    params, stats = jax.jit(dec.init)(fast_key(0))
    return dec, params, stats, jax.jit(partial(dec.apply, train=False))


@pytest.fixture(scope="module")
def mae1():
    return make_mae(1)


@pytest.fixture(scope="module")
def mae0():
    return make_mae(0)


def encoder_tokens(n, k, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, 1 + k, ENC))


def masking(n, mask_ratio=0.75, seed=1):
    return random_masking(jax.random.key(seed), n, L, mask_ratio=mask_ratio)


# --- sine-cosine position embeddings -------------------------------------------------------


def mae_sincos_reference(dim, rows, cols):
    """MAE's ``get_2d_sincos_pos_embed(cls_token=True)`` in float64, for a rows x cols grid.

    Follows MAE's structure: ``meshgrid(grid_w, grid_h)`` (column coordinate first), one 1-D
    table of width ``dim / 2`` per coordinate, each ``[sin(pos * omega), cos(pos * omega)]`` with
    ``omega_k = 1 / 10000 ** (k / (dim / 4))``.
    """

    def one_d(width, pos):
        omega = 1.0 / 10000.0 ** (np.arange(width // 2, dtype=np.float64) / (width / 2.0))
        angles = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    grid_h = np.arange(rows, dtype=np.float64)
    grid_w = np.arange(cols, dtype=np.float64)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0)  # (2, rows, cols), w first
    emb = np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)
    return np.concatenate([np.zeros((1, dim)), emb], axis=0)


@pytest.mark.parametrize("dim, grid", [(16, (4, 4)), (8, (2, 3)), (32, (5, 3))])
def test_sincos_matches_numpy_reference(dim, grid):
    emb = sincos_pos_embed_2d(dim, grid)
    assert emb.shape == (1 + grid[0] * grid[1], dim) and emb.dtype == jnp.float32
    np.testing.assert_allclose(emb, mae_sincos_reference(dim, *grid), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(sincos_pos_embed_2d(dim, grid, cls_token=False), emb[1:])


def test_sincos_layout_by_hand():
    """D = 16, a 2x3 grid: omega_1 = 10000**(-1/4) = 0.1; patch (row 1, column 2) is j = 5."""
    emb = np.asarray(sincos_pos_embed_2d(16, (2, 3)))
    np.testing.assert_array_equal(emb[0], 0.0)
    patch = emb[1 + 5]
    np.testing.assert_allclose(patch[1], np.sin(2 * 0.1), atol=1e-7)  # column, sin
    np.testing.assert_allclose(patch[4 + 1], np.cos(2 * 0.1), atol=1e-7)  # column, cos
    np.testing.assert_allclose(patch[8 + 1], np.sin(1 * 0.1), atol=1e-7)  # row, sin
    np.testing.assert_allclose(patch[12 + 1], np.cos(1 * 0.1), atol=1e-7)  # row, cos
    table = emb[1:].reshape(2, 3, 16)
    np.testing.assert_array_equal(table[0, :, :8], table[1, :, :8])  # first half: column only
    np.testing.assert_array_equal(table[:, 0, 8:], table[:, 2, 8:])  # second half: row only


def test_docstring_examples():
    assert doctest.testmod(decoders, raise_on_error=True).attempted >= 1


def test_sincos_rejects_bad_arguments():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed_2d(10, (2, 2))
    with pytest.raises(ValueError, match="grid_size"):
        sincos_pos_embed_2d(8, (2, 0))


# --- MAEDecoder ----------------------------------------------------------------------------


def test_mae_decoder_shapes_through_module_def(mae1):
    _, params, stats, apply = mae1
    assert not jax.tree.leaves(stats)
    assert set(params.keys()) == {"blocks", "decoder_embed", "mask_token", "norm", "pred"}
    m = masking(3)
    out, new_stats = apply(params, stats, encoder_tokens(3, 4), ids_restore=m.ids_restore)
    assert out.shape == (3, L, MAE_KW["patch_dim"]) and out.dtype == jnp.float32
    assert np.isfinite(out).all() and not jax.tree.leaves(new_stats)


def test_mae_decoder_init_follows_mae(mae1):
    _, params, _, _ = mae1
    block = params["blocks"][0]
    linears = [
        params["decoder_embed"],
        block["attn"]["qkv"],
        block["attn"]["proj"],
        block["mlp"]["fc1"],
        block["mlp"]["fc2"],
        params["pred"],
    ]
    for linear in linears:
        kernel = np.asarray(linear["kernel"][...])
        bound = np.sqrt(6.0 / sum(kernel.shape))  # Xavier-uniform
        assert 0.8 * bound < np.abs(kernel).max() <= bound, kernel.shape
        np.testing.assert_array_equal(linear["bias"][...], 0.0)
    for norm in (block["norm1"], block["norm2"], params["norm"]):
        np.testing.assert_array_equal(norm["scale"][...], 1.0)
        np.testing.assert_array_equal(norm["bias"][...], 0.0)
    token = np.asarray(params["mask_token"][...])
    assert token.shape == (1, 1, 16) and 0.0 < np.abs(token).max() < 0.1  # std 0.02


def layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def test_depth0_decoder_matches_numpy_reference(mae0):
    """With no blocks, patch j is pred(norm(source + pos_j)): its visible token or the mask
    token, chosen and placed by ids_restore (MAE's forward_decoder, written per patch)."""
    _, params, stats, apply = mae0
    n, k = 3, 4
    tokens = encoder_tokens(n, k)
    m = masking(n)
    out, _ = apply(params, stats, tokens, ids_restore=m.ids_restore)

    p = jax.tree.map(lambda v: np.asarray(v, np.float64), nnx.to_pure_dict(params))
    embedded = np.asarray(tokens, np.float64) @ p["decoder_embed"]["kernel"]
    embedded += p["decoder_embed"]["bias"]
    pos = mae_sincos_reference(16, *GRID)
    expected = np.zeros(out.shape)
    for i in range(n):
        for j in range(L):
            rank = int(m.ids_restore[i, j])
            src = embedded[i, 1 + rank] if rank < k else p["mask_token"][0, 0]
            h = layer_norm(src + pos[1 + j], p["norm"]["scale"], p["norm"]["bias"])
            expected[i, j] = h @ p["pred"]["kernel"] + p["pred"]["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_masked_positions_get_the_mask_token(mae0):
    """At depth 0, masked outputs ignore the visible tokens' values; visible outputs do not."""
    _, params, stats, apply = mae0
    m = masking(2)
    out_a, _ = apply(params, stats, encoder_tokens(2, 4, seed=0), ids_restore=m.ids_restore)
    out_b, _ = apply(params, stats, encoder_tokens(2, 4, seed=5), ids_restore=m.ids_restore)
    mask = np.asarray(m.mask)
    np.testing.assert_array_equal(np.asarray(out_a)[mask], np.asarray(out_b)[mask])
    assert np.abs(np.asarray(out_a)[~mask] - np.asarray(out_b)[~mask]).min() > 0.0


def test_output_independent_of_shuffle_order(mae1):
    """Position j's output depends on patch j's token, not on where it sat in the shuffle."""
    _, params, stats, apply = mae1
    n = 2
    m = masking(n)
    k = m.keep_indices.shape[1]
    tokens = encoder_tokens(n, k)
    out, _ = apply(params, stats, tokens, ids_restore=m.ids_restore)
    again, _ = apply(params, stats, tokens, ids_restore=m.ids_restore)
    np.testing.assert_array_equal(out, again)

    perms = jnp.stack([jax.random.permutation(jax.random.key(7 + i), k) for i in range(n)])
    visible = jnp.take_along_axis(tokens[:, 1:], perms[:, :, None], axis=1)
    permuted_tokens = jnp.concatenate([tokens[:, :1], visible], axis=1)
    shuffle = jnp.argsort(m.ids_restore, axis=1)  # keep_indices, then the removed patches
    permuted_shuffle = jnp.concatenate(
        [jnp.take_along_axis(shuffle[:, :k], perms, axis=1), shuffle[:, k:]], axis=1
    )
    permuted_restore = jnp.argsort(permuted_shuffle, axis=1)
    moved, _ = apply(params, stats, permuted_tokens, ids_restore=permuted_restore)
    np.testing.assert_allclose(moved, out, rtol=1e-5, atol=1e-5)

    # The check can fail: the permuted tokens with the old un-shuffle land in the wrong places.
    wrong, _ = apply(params, stats, permuted_tokens, ids_restore=m.ids_restore)
    assert not np.allclose(wrong, out, atol=1e-3)


@pytest.mark.slow  # a decoder gradient to compile (about 5 s)
def test_gradients_reach_the_mask_token(mae1):
    _, params, stats, apply = mae1

    @jax.jit
    @jax.grad
    def loss_grads(params, tokens, ids_restore):
        out, _ = apply(params, stats, tokens, ids_restore=ids_restore)
        return jnp.sum(out**2)

    m = masking(2)
    grads = loss_grads(params, encoder_tokens(2, 4), m.ids_restore)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert np.abs(grads["mask_token"][...]).sum() > 0.0
    assert np.abs(grads["decoder_embed"]["kernel"][...]).sum() > 0.0
    # With every patch visible no mask token is used, so its gradient is exactly zero.
    full = masking(2, mask_ratio=0.0)
    grads = loss_grads(params, encoder_tokens(2, L), full.ids_restore)
    np.testing.assert_array_equal(grads["mask_token"][...], 0.0)


def test_mae_decoder_rejects_bad_shapes(mae1):
    dec, params, stats, _ = mae1
    module = nnx.merge(dec.graphdef, params, stats)
    ids = masking(2).ids_restore
    with pytest.raises(ValueError, match="encoder_dim=12"):
        module(jnp.zeros((2, 5, ENC + 1)), ids)
    with pytest.raises(ValueError, match="K <= 16"):
        module(jnp.zeros((2, L + 2, ENC)), ids)
    with pytest.raises(ValueError, match=r"\(N, L\) = \(2, 16\)"):
        module(jnp.zeros((2, 5, ENC)), ids[:, :8])
    with pytest.raises(ValueError, match="integer"):
        module(jnp.zeros((2, 5, ENC)), ids.astype(jnp.float32))
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="num_patches=16 does not match"):
        MAEDecoder(**{**MAE_KW, "grid_size": (4, 5)}, depth=1, rngs=rngs)
    with pytest.raises(ValueError, match="multiple of 4"):
        MAEDecoder(**{**MAE_KW, "decoder_dim": 18}, depth=1, rngs=rngs)
    with pytest.raises(ValueError, match="depth"):
        MAEDecoder(**MAE_KW, depth=-1, rngs=rngs)


# --- ConvDecoder ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conv_dec():
    dec = module_def(lambda rngs: ConvDecoder(6, 5, width=8, num_upsamples=2, rngs=rngs))
    params, stats = jax.jit(dec.init)(fast_key(0))
    apply = jax.jit(dec.apply, static_argnames="train")
    return dec, params, stats, apply


def feature_map(n=3, seed=3):
    return jax.random.normal(jax.random.key(seed), (n, 3, 5, 6)) + 1.0


def test_conv_decoder_shapes(conv_dec):
    _, params, stats, apply = conv_dec
    out, _ = apply(params, stats, feature_map(), train=True)
    assert out.shape == (3, 12, 20, 5) and out.dtype == jnp.float32
    assert np.isfinite(out).all()
    head = module_def(lambda rngs: ConvDecoder(6, 5, num_upsamples=0, rngs=rngs))
    out, _ = head.apply(*head.init(fast_key(1)), feature_map(), train=False)
    assert out.shape == (3, 3, 5, 5)
    with pytest.raises(ValueError, match=r"\(N, H, W, 6\)"):
        apply(params, stats, jnp.zeros((3, 3, 5, 4)), train=True)


def test_conv_decoder_stage_is_nearest_resize_conv_bn_relu(conv_dec):
    """Eval mode with fresh statistics (mean 0, var 1): reference built from the parts."""
    dec, params, stats, apply = conv_dec
    x = feature_map()
    out, _ = apply(params, stats, x, train=False)
    module = nnx.merge(dec.graphdef, params, stats)
    h = x
    for conv, norm in zip(module.convs, module.norms, strict=True):
        h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)  # nearest 2x
        h = conv(h)
        h = (h - norm.mean[...]) / jnp.sqrt(norm.var[...] + 1e-5) * norm.scale[...]
        h = jnp.maximum(h + norm.bias[...], 0.0)
    expected = h @ module.out.kernel[...][0, 0] + module.out.bias[...]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_conv_decoder_batchnorm_train_vs_eval(conv_dec):
    dec, params, stats, apply = conv_dec
    x = feature_map()
    _, new_stats = apply(params, stats, x, train=True)
    # Running mean after one step from 0 is (1 - momentum) * the batch mean of conv1's output.
    module = nnx.merge(dec.graphdef, params, stats)
    conv1 = module.convs[0](jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))
    np.testing.assert_allclose(
        new_stats["norms"][0]["mean"][...], 0.1 * conv1.mean(axis=(0, 1, 2)), atol=1e-5
    )
    # Eval leaves the statistics alone and normalises with them: an example's output does not
    # depend on the rest of the batch, and changes with the running statistics.
    _, same = apply(params, new_stats, x, train=False)
    jax.tree.map(np.testing.assert_array_equal, same, new_stats)
    other = x.at[1:].set(feature_map(2, seed=9) * 3.0)
    eval_a, _ = apply(params, new_stats, x, train=False)
    eval_b, _ = apply(params, new_stats, other, train=False)
    np.testing.assert_allclose(eval_a[0], eval_b[0], rtol=1e-6, atol=1e-6)
    eval_fresh, _ = apply(params, stats, x, train=False)
    assert not np.allclose(eval_a, eval_fresh, atol=1e-3)
    # Train mode normalises with the batch's statistics: the rest of the batch matters.
    train_a, _ = apply(params, stats, x, train=True)
    train_b, _ = apply(params, stats, other, train=True)
    assert not np.allclose(train_a[0], train_b[0], atol=1e-3)
