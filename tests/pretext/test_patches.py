import doctest
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax.models import apply_module, split_module, vit_tiny
from ssl_jax.pretext import patches
from ssl_jax.pretext.patches import (
    normalized_patch_targets,
    patchify,
    random_masking,
    unpatchify,
)

masking = jax.jit(random_masking, static_argnums=(1, 2), static_argnames="mask_ratio")


@pytest.fixture(scope="module")
def tiny_vit():
    """A one-block ViT on 4x4 patches (8x12 inputs give a 2x3 grid of L = 6 patches) and its
    jitted forward pass ``encode(x, **kwargs)``. Its parameters are drawn with NumPy into the
    module's abstract state (``nnx.eval_shape``), which skips compiling every initialiser."""
    build = partial(vit_tiny, depth=1, embed_dim=8, num_heads=2, patch_size=4, img_size=8)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: build(rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda a: jnp.asarray(rng.normal(0, 0.5, a.shape), a.dtype), abstract)
    vit = nnx.merge(graphdef, state)
    graphdef, params, stats = split_module(vit)

    def encode(x, **kwargs):
        return apply_module(graphdef, params, stats, x, train=False, **kwargs)[0]

    return vit, encode


def mae_patchify(images_nchw, p):
    """MAE's ``patchify`` (models_mae.py) in NumPy, on NCHW images, square or not."""
    n, c, height, width = images_nchw.shape
    h, w = height // p, width // p
    x = images_nchw.reshape(n, c, h, p, w, p)
    x = np.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, h * w, p * p * c)


def test_patchify_matches_maes_and_an_explicit_loop():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 6, 9, 3)).astype(np.float32)
    got = np.asarray(jax.jit(patchify, static_argnums=1)(images, 3))
    assert got.shape == (2, 2 * 3, 3 * 3 * 3)
    np.testing.assert_array_equal(got, mae_patchify(images.transpose(0, 3, 1, 2), 3))
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(
                got[:, i * 3 + j], images[:, 3 * i : 3 * i + 3, 3 * j : 3 * j + 3].reshape(2, -1)
            )


def test_unpatchify_inverts_patchify_exactly():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(3, 8, 12, 2)).astype(np.float32)
    tokens = patchify(images, 4)
    np.testing.assert_array_equal(unpatchify(tokens, 4, 8, 12, 2), images)
    other = rng.normal(size=tokens.shape).astype(np.float32)
    np.testing.assert_array_equal(patchify(unpatchify(other, 4, 8, 12, 2), 4), other)


def test_patchify_rows_are_the_vits_patch_embedding_inputs(tiny_vit):
    """Token j of the ViT's patch embedding (the sequence keep_indices indexes) is the conv
    kernel applied to patchify's row j."""
    vit, _ = tiny_vit
    images = np.random.default_rng(2).uniform(size=(2, 8, 12, 3)).astype(np.float32)
    embedded = vit.patch_embed(jnp.asarray(images)).reshape(2, 6, 8)  # as in __call__
    kernel = vit.patch_embed.kernel[...]
    assert kernel.shape == (4, 4, 3, 8)
    want = patchify(images, 4) @ kernel.reshape(4 * 4 * 3, 8) + vit.patch_embed.bias[...]
    np.testing.assert_allclose(embedded, want, rtol=1e-5, atol=1e-6)


def test_vit_keeping_patch_j_sees_exactly_patchify_row_j(tiny_vit):
    _, encode = tiny_vit
    rng = np.random.default_rng(3)
    tokens = rng.uniform(size=(1, 6, 48)).astype(np.float32)
    base = encode(unpatchify(tokens, 4, 8, 12, 3), keep_indices=jnp.array([[4]]))
    for j in range(6):
        changed = tokens.copy()
        changed[0, j] += 1.0
        out = encode(unpatchify(changed, 4, 8, 12, 3), keep_indices=jnp.array([[4]]))
        assert np.allclose(out, base, atol=1e-6) == (j != 4)


def test_mae_encoder_never_sees_a_masked_patch(tiny_vit):
    _, encode = tiny_vit
    n = 4
    images = np.random.default_rng(4).uniform(size=(n, 8, 12, 3)).astype(np.float32)
    keep, mask, _ = masking(jax.random.key(0), n, 6, mask_ratio=0.5)
    tokens = patchify(images, 4)

    def encode_filled(masked_value):
        filled = jnp.where(mask[..., None], masked_value, tokens)
        return encode(unpatchify(filled, 4, 8, 12, 3), keep_indices=keep, return_all=True)

    clean, nan, huge = (encode_filled(v) for v in (tokens, jnp.nan, 1e30))
    assert clean["tokens"].shape == (n, 1 + 3, 8)
    for out in (nan, huge):
        for name in ("tokens", "pooled"):
            assert np.all(np.isfinite(out[name]))
            np.testing.assert_allclose(out[name], clean[name], rtol=0, atol=1e-6)
    # The same NaN images through the full sequence poison the output: the check can fail.
    nan_images = unpatchify(jnp.where(mask[..., None], jnp.nan, tokens), 4, 8, 12, 3)
    assert np.all(np.isnan(encode(nan_images, return_all=True)["pooled"]))


def test_keep_order_does_not_change_the_vits_features(tiny_vit):
    _, encode = tiny_vit
    images = jnp.asarray(np.random.default_rng(5).uniform(size=(4, 8, 12, 3)), jnp.float32)
    keep = masking(jax.random.key(1), 4, 6, mask_ratio=0.5).keep_indices
    assert not np.array_equal(keep, jnp.sort(keep, axis=1))
    shuffled = encode(images, keep_indices=keep, return_all=True)
    ordered = encode(images, keep_indices=jnp.sort(keep, axis=1), return_all=True)
    np.testing.assert_allclose(shuffled["pooled"], ordered["pooled"], atol=1e-5)
    by_position = jnp.argsort(keep, axis=1)[..., None]  # the same tokens, only reordered
    np.testing.assert_allclose(
        ordered["tokens"][:, 1:],
        jnp.take_along_axis(shuffled["tokens"][:, 1:], by_position, axis=1),
        atol=1e-5,
    )


@pytest.mark.parametrize(("num_patches", "ratio", "num_keep"), [(16, 0.75, 4), (10, 0.75, 2)])
def test_random_masking_keeps_k_distinct_patches(num_patches, ratio, num_keep):
    n = 32
    keep, mask, restore = masking(jax.random.key(2), n, num_patches, mask_ratio=ratio)
    keep, mask, restore = np.asarray(keep), np.asarray(mask), np.asarray(restore)
    assert keep.shape == (n, num_keep) and keep.dtype == np.int32
    assert mask.shape == (n, num_patches) and mask.dtype == bool
    assert restore.shape == (n, num_patches) and restore.dtype == np.int32
    for row_keep, row_mask, row_restore in zip(keep, mask, restore, strict=True):
        assert len(set(row_keep.tolist())) == num_keep
        assert row_keep.min() >= 0 and row_keep.max() < num_patches
        assert row_mask.sum() == num_patches - num_keep
        assert not row_mask[row_keep].any()
        np.testing.assert_array_equal(np.sort(row_restore), np.arange(num_patches))
        shuffle = np.argsort(row_restore)  # restore is the inverse permutation of the shuffle
        np.testing.assert_array_equal(shuffle[:num_keep], row_keep)
        np.testing.assert_array_equal(row_restore[shuffle], np.arange(num_patches))


def test_random_masking_matches_maes_algorithm_on_the_same_noise():
    n, num_patches = 32, 16
    key = jax.random.key(3)
    noise = np.stack([jax.random.uniform(k, (num_patches,)) for k in jax.random.split(key, n)])
    ids_shuffle = np.argsort(noise, axis=1)
    ids_restore = np.argsort(ids_shuffle, axis=1)
    len_keep = int(num_patches * (1 - 0.75))
    mask = np.ones((n, num_patches))
    mask[:, :len_keep] = 0
    mask = np.take_along_axis(mask, ids_restore, axis=1)
    got = masking(key, n, num_patches, mask_ratio=0.75)
    np.testing.assert_array_equal(got.keep_indices, ids_shuffle[:, :len_keep])
    np.testing.assert_array_equal(got.mask, mask.astype(bool))
    np.testing.assert_array_equal(got.ids_restore, ids_restore)


def test_ids_restore_puts_mask_tokens_back_in_place():
    """MAE's decoder: append mask tokens to the kept tokens, unshuffle with ids_restore."""
    n, num_patches, dim = 32, 16, 3
    x = jnp.asarray(np.random.default_rng(6).normal(size=(n, num_patches, dim)), jnp.float32)
    keep, mask, restore = masking(jax.random.key(4), n, num_patches, mask_ratio=0.75)
    kept = jnp.take_along_axis(x, keep[..., None], axis=1)
    mask_token = jnp.full((n, num_patches - keep.shape[1], dim), -99.0)
    full = jnp.concatenate([kept, mask_token], axis=1)
    unshuffled = jnp.take_along_axis(full, restore[..., None], axis=1)
    np.testing.assert_array_equal(unshuffled, jnp.where(mask[..., None], -99.0, x))


def test_random_masking_is_seeded_uniform_and_differs_between_rows():
    a, b, c = (masking(jax.random.key(seed), 32, 16, mask_ratio=0.75) for seed in (5, 5, 6))
    np.testing.assert_array_equal(a.keep_indices, b.keep_indices)
    assert not np.array_equal(a.keep_indices, c.keep_indices)
    assert len({row.tobytes() for row in np.asarray(a.mask)}) > 25  # of C(16, 4) = 1820
    many = np.concatenate(
        [
            masking(key, 32, 16, mask_ratio=0.75).mask
            for key in jax.random.split(jax.random.key(7), 64)
        ]
    )
    np.testing.assert_allclose(many.mean(axis=0), 0.75, atol=0.04)  # each patch equally likely


def test_random_masking_without_masking_keeps_everything():
    keep, mask, restore = random_masking(jax.random.key(7), 2, 6, mask_ratio=0.0)
    assert keep.shape == (2, 6) and not mask.any()
    np.testing.assert_array_equal(np.sort(keep, axis=1), np.tile(np.arange(6), (2, 1)))


@pytest.mark.parametrize("ratio", [1.0, -0.1, 0.99, True])
def test_random_masking_rejects_ratios_that_keep_nothing_or_are_invalid(ratio):
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(jax.random.key(0), 2, 16, mask_ratio=ratio)


def numpy_normalized_targets(x, eps):
    x = np.asarray(x, np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).sum(-1, keepdims=True) / (x.shape[-1] - 1)  # torch's unbiased var
    return (x - mean) / np.sqrt(var + eps)


def test_normalized_targets_match_maes_formula_with_unbiased_variance():
    rng = np.random.default_rng(8)
    x = rng.uniform(size=(2, 5, 12)).astype(np.float32)
    got = jax.jit(normalized_patch_targets)(x)
    assert got.shape == x.shape and got.dtype == jnp.float32
    want = numpy_normalized_targets(x, 1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    biased = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    assert not np.allclose(got, biased, rtol=1e-3)
    with jax.enable_x64(True):
        x64 = rng.uniform(size=(3, 7))
        got64 = normalized_patch_targets(x64, eps=0.1)
        assert got64.dtype == jnp.float64
        np.testing.assert_allclose(got64, numpy_normalized_targets(x64, 0.1), rtol=1e-12)


def test_normalized_targets_of_a_flat_patch_are_zero():
    got = normalized_patch_targets(jnp.full((1, 2, 8), 0.5))
    np.testing.assert_array_equal(got, 0.0)


def test_shape_errors_say_what_to_do():
    with pytest.raises(ValueError, match="multiples of 4"):
        patchify(jnp.zeros((1, 8, 10, 3)), 4)
    with pytest.raises(ValueError, match="NHWC"):
        patchify(jnp.zeros((8, 8, 3)), 4)
    with pytest.raises(ValueError, match=r"\(N, 6, 48\)"):
        unpatchify(jnp.zeros((1, 6, 47)), 4, 8, 12, 3)
    with pytest.raises(ValueError, match="D = p \\* p \\* C >= 2"):
        normalized_patch_targets(jnp.zeros((2, 1)))


def test_docstring_examples():
    assert doctest.testmod(patches, raise_on_error=True).attempted >= 3
