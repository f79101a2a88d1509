"""Tests for ssl_jax.models.module_def: structure without memory, pure init and apply."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssl_jax.models import (
    BasicBlock,
    MLPHead,
    ModuleDef,
    ResNet,
    apply_module,
    module_def,
    resnet50,
    split_module,
)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def fast_key(seed):
    """An "unsafe_rbg" key: XLA on CPU compiles threefry's bits for each initialiser in about
    half a second, RngBitGenerator's far faster. ``init`` works with any key."""
    return jax.random.key(seed, impl="unsafe_rbg")


def test_mlp_head_init_apply_round_trip():
    head = module_def(lambda rngs: MLPHead(4, 8, 3, num_layers=2, rngs=rngs))
    assert isinstance(head, ModuleDef) and head.feature_dim is None
    init = jax.jit(head.init)
    params, stats = init(jax.random.key(0))  # the default PRNG once
    # graphdef and the initialised variables fit together: merge, then split back.
    module = nnx.merge(head.graphdef, params, stats)
    assert isinstance(module, MLPHead)
    _, expected_params, expected_stats = split_module(module)
    assert_trees_equal(params, expected_params)
    assert_trees_equal(stats, expected_stats)
    assert_trees_equal(init(jax.random.key(0)), (params, stats))
    other, _ = init(jax.random.key(1))
    assert not np.allclose(other["linears"][0]["kernel"][...], params["linears"][0]["kernel"][...])

    x = jax.random.normal(jax.random.key(2), (6, 4))
    out, new_stats = jax.jit(partial(head.apply, train=True))(params, stats, x)
    ref, ref_stats = apply_module(head.graphdef, params, stats, x, train=True)
    assert out.shape == (6, 3)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    jax.tree.map(partial(np.testing.assert_allclose, rtol=1e-6), new_stats, ref_stats)
    assert not np.allclose(new_stats["norms"][0]["mean"][...], 0.0)  # BatchNorm updated
    _, same_stats = head.apply(params, new_stats, x, train=False)
    assert_trees_equal(same_stats, new_stats)


def test_resnet_feature_dim_and_apply_kwargs():
    backbone = module_def(partial(ResNet, stage_sizes=(1, 1), block=BasicBlock, width=4))
    assert backbone.feature_dim == 8
    params, stats = jax.jit(backbone.init)(fast_key(0))
    assert jax.tree.structure((params, stats)) == jax.tree.structure(
        jax.eval_shape(backbone.init, jax.random.key(0))
    )

    @jax.jit  # one compilation for the three calls
    def run(params, stats, x):
        return (
            backbone.apply(params, stats, x, train=False),
            backbone.apply(params, stats, x, train=False, return_all=True),  # kwargs reach it
            backbone.apply(params, stats, x, train=True)[1],
        )

    (features, eval_stats), (maps, _), train_stats = run(
        params, stats, jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
    )
    assert features.shape == (2, 8) and features.dtype == jnp.float32
    assert_trees_equal(eval_stats, stats)
    np.testing.assert_array_equal(maps["pooled"], features)
    assert maps["stem"].shape == (2, 4, 4, 4) and maps["stage2"].shape == (2, 2, 2, 8)
    assert not np.allclose(train_stats["bn1"]["mean"][...], stats["bn1"]["mean"][...])


def test_module_def_allocates_nothing_and_rejects_rng_state():
    # A full-width ResNet-50 is only traced: no parameter memory, no random numbers drawn.
    calls = []

    def build(rngs):
        calls.append(rngs)
        return resnet50(width=64, rngs=rngs)

    backbone = module_def(build)
    assert backbone.feature_dim == 2048 and len(calls) == 1
    params, _ = jax.eval_shape(backbone.init, jax.random.key(0))
    assert params["conv1"]["kernel"].shape == (7, 7, 3, 64)
    hash(backbone)  # usable as a static argument of jax.jit

    class WithDropout(nnx.Module):
        def __init__(self, rngs):
            self.dropout = nnx.Dropout(0.5, rngs=rngs)

    with pytest.raises(ValueError, match="neither nnx.Param nor nnx.BatchStat"):
        module_def(WithDropout)
