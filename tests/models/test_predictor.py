"""I-JEPA's predictor: shapes, one pass per target block, positions from the fixed sine-cosine
embeddings, and the authors' initialisation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax.models import sincos_pos_embed_2d
from ssl_jax.models.predictor import JEPAPredictor


@pytest.fixture(scope="module")
def predictor():
    return JEPAPredictor(
        grid_size=(4, 4), encoder_dim=12, predictor_dim=8, depth=3, num_heads=2, rngs=nnx.Rngs(0)
    )


def inputs():
    context = jax.random.normal(jax.random.key(1), (2, 5, 12))
    ctx_idx = jnp.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    tgt_idx = jnp.array([[[10, 11, 14], [12, 13, 15]], [[0, 1, 2], [3, 4, 11]]])
    return context, ctx_idx, tgt_idx


def test_each_block_is_predicted_from_the_context_alone(predictor):
    context, ctx_idx, tgt_idx = inputs()
    out = predictor(context, context_indices=ctx_idx, target_indices=tgt_idx)
    assert out.shape == (2, 2, 3, 12) and out.dtype == jnp.float32
    # Moving block 1 leaves block 0's predictions as they were: separate passes.
    moved = tgt_idx.at[:, 1].set(jnp.array([[1, 2, 3], [12, 13, 14]]))
    out2 = predictor(context, context_indices=ctx_idx, target_indices=moved)
    np.testing.assert_allclose(out2[:, 0], out[:, 0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(out2[:, 1], out[:, 1])
    # The same block alone (M = 1) gives the same predictions.
    alone = predictor(context, context_indices=ctx_idx, target_indices=tgt_idx[:, :1])
    np.testing.assert_allclose(alone[:, 0], out[:, 0], rtol=1e-6, atol=1e-6)


def test_a_target_token_is_the_mask_token_plus_its_fixed_position(predictor):
    pos = np.asarray(sincos_pos_embed_2d(8, (4, 4), cls_token=False))
    captured = {}

    class Spy(nnx.Module):
        def __init__(self, block):
            self.block = block

        def __call__(self, x):
            captured.setdefault("x", x)
            return self.block(x)

    context, ctx_idx, tgt_idx = inputs()
    spy = nnx.clone(predictor)
    spy.blocks[0] = Spy(spy.blocks[0])
    spy(context, context_indices=ctx_idx, target_indices=tgt_idx)
    x = np.asarray(captured["x"]).reshape(2, 2, 8, 8)  # (N, M, Kc + K, width)
    mask = np.asarray(predictor.mask_token[...])[0, 0]
    np.testing.assert_allclose(x[:, :, 5:], mask + pos[np.asarray(tgt_idx)], rtol=1e-6, atol=1e-6)
    embedded = np.asarray(predictor.predictor_embed(context)) + pos[np.asarray(ctx_idx)]
    for block in range(2):
        np.testing.assert_allclose(x[:, block, :5], embedded, rtol=1e-5, atol=1e-6)


def test_output_projections_are_rescaled_per_depth():
    stds = []
    for seed in range(4):
        p = JEPAPredictor(grid_size=(4, 4), encoder_dim=64, predictor_dim=64, depth=3,
                          num_heads=2, rngs=nnx.Rngs(seed))  # fmt: skip
        stds.append([float(jnp.std(b.mlp.fc2.kernel[...])) for b in p.blocks])
        assert float(jnp.std(p.blocks[0].attn.qkv.kernel[...])) == pytest.approx(0.02, rel=0.05)
    want = [0.02 / math.sqrt(2 * (i + 1)) for i in range(3)]
    np.testing.assert_allclose(np.mean(stds, axis=0), want, rtol=0.05)


def test_bad_shapes_raise(predictor):
    context, ctx_idx, tgt_idx = inputs()
    with pytest.raises(ValueError, match="context_indices of shape"):
        predictor(context, context_indices=ctx_idx[:, :3], target_indices=tgt_idx)
    with pytest.raises(ValueError, match="multiple of 4"):
        JEPAPredictor(grid_size=(4, 4), encoder_dim=8, predictor_dim=6, depth=1, num_heads=2,
                      rngs=nnx.Rngs(0))  # fmt: skip
