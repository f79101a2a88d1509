"""The text encoder (ViT blocks on token embeddings), its padding / segment masks, the MLM head."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from ssl_jax.models import BACKBONES, TEXT_ENCODERS, MLMHead, make_backbone
from ssl_jax.models.text import attention_bias
from ssl_jax.models.vit import Block

SMALL = dict(vocab_size=50, max_len=16, embed_dim=16, depth=1, num_heads=2)


def encoder(pool="cls", **kwargs):
    return TEXT_ENCODERS["bert_tiny"](rngs=nnx.Rngs(0), **{**SMALL, "pool": pool, **kwargs})


def test_sizes_are_the_bert_miniatures_and_registered():
    shapes = {}
    for name in ("bert_tiny", "bert_mini", "bert_small", "bert_base"):
        assert name in BACKBONES
        model = nnx.eval_shape(lambda n=name: TEXT_ENCODERS[n](rngs=nnx.Rngs(0), vocab_size=100))
        assert all(isinstance(b, Block) for b in model.blocks)
        shapes[name] = (len(model.blocks), model.feature_dim, model.blocks[0].attn.num_heads)
    assert shapes == {
        "bert_tiny": (2, 128, 2),
        "bert_mini": (4, 256, 4),
        "bert_small": (4, 512, 8),
        "bert_base": (12, 768, 12),
    }


def test_padding_and_other_segments_do_not_change_real_tokens():
    model = encoder()
    model.eval()
    rng = np.random.default_rng(0)
    tokens = np.zeros((2, 12), np.int32)
    tokens[:, :7] = rng.integers(5, 50, (2, 7))
    out = model(tokens, return_all=True)
    other_pad = tokens.copy()
    other_pad[:, 7:] = rng.integers(5, 50, (2, 5))
    segments = (np.arange(12) < 7).astype(np.int32)[None].repeat(2, 0)
    again = model(other_pad, segments=segments, return_all=True)
    np.testing.assert_allclose(again["tokens"][:, :7], out["tokens"][:, :7], atol=1e-5)
    np.testing.assert_allclose(again["pooled"], out["pooled"], atol=1e-5)
    # Two documents in one sequence: the first one's tokens ignore the second's.
    segments2 = np.where(np.arange(12) < 7, 1, 2)[None].repeat(2, 0)
    both = model(other_pad, segments=segments2, return_all=True)
    np.testing.assert_allclose(both["tokens"][:, :7], out["tokens"][:, :7], atol=1e-5)
    assert not np.allclose(both["tokens"][:, 7:], again["tokens"][:, 7:])  # they attend now
    assert np.all(np.isfinite(out["tokens"]))  # padding queries see no key: still finite
    # Mean pooling averages the real tokens only (the same parameters, pool="mean").
    model.pool = "mean"
    mean = model(tokens, return_all=True)
    np.testing.assert_allclose(mean["pooled"], out["tokens"][:, :7].mean(1), rtol=1e-5)


def test_attention_bias_blocks_segments_and_padding_keys():
    bias = np.asarray(attention_bias(jnp.array([[1, 1, 2, 0]])))[0, 0]
    allowed = bias == 0
    np.testing.assert_array_equal(allowed, [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])


def test_long_sequences_and_bad_fields_are_errors():
    with pytest.raises(ValueError, match="longer than the model's max_len=16"):
        encoder()(jnp.ones((1, 17), jnp.int32))
    with pytest.raises(ValueError, match="int ids"):
        encoder()(jnp.ones((1, 4)))
    model = ml_collections.ConfigDict(dict(backbone="bert_tiny"))
    with pytest.raises(ValueError, match="needs model.vocab_size"):
        make_backbone(model)
    with pytest.raises(ValueError, match="pool"):
        encoder("max")


def test_model_section_builds_the_encoder():
    model = ml_collections.ConfigDict(
        dict(backbone="bert_tiny", vocab_size=60, max_len=8, embed_dim=16, depth=1)
    )
    backbone = make_backbone(model)
    params, stats = backbone.init(jax.random.key(0))
    assert backbone.feature_dim == 16 and params["token_embed"].shape == (60, 16)
    features, _ = backbone.apply(params, stats, jnp.ones((3, 8), jnp.int32), train=False)
    assert features.shape == (3, 16) and features.dtype == jnp.float32


def test_mlm_head_is_tied_to_the_embedding():
    head = MLMHead(8, 11, rngs=nnx.Rngs(0))
    emb = jax.random.normal(jax.random.key(1), (11, 8))
    h = jax.random.normal(jax.random.key(2), (3, 8))
    x = np.asarray(
        jax.nn.gelu(h @ head.dense.kernel[...] + head.dense.bias[...], approximate=False)
    )
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(head(h, emb), x @ np.asarray(emb).T, rtol=1e-4, atol=1e-5)
    grad = jax.grad(lambda e: head(h, e).sum())(emb)
    assert np.abs(grad).sum() > 0  # the embedding trains through the output projection
