"""Tests for ssl_jax.models.heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from ssl_jax.models import LinearClassifier, MLPHead, apply_module, split_module


def paths(state):
    return {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(state)}


@pytest.mark.parametrize("last_bn", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_mlp_head_shapes(num_layers, last_bn):
    head = MLPHead(8, 16, 4, num_layers=num_layers, last_bn=last_bn, rngs=nnx.Rngs(0))
    graphdef, params, stats = split_module(head)
    x = jax.random.normal(jax.random.key(0), (5, 8))
    for train in (True, False):
        out, _ = apply_module(graphdef, params, stats, x, train=train)
        assert out.shape == (5, 4)
    kernels = [x.shape for p, x in nnx.to_flat_state(params) if p[-1] == "kernel"]
    assert kernels == [(8, 16)] * (num_layers > 1) + [(16, 16)] * (num_layers - 2) + [
        (16 if num_layers > 1 else 8, 4)
    ]
    last = f"linears/{num_layers - 1}"
    assert (f"{last}/bias" in paths(params)) == (not last_bn)
    assert ("last_norm/scale" in paths(params)) == last_bn
    # Hidden Linear layers feed BatchNorm, so they carry no bias.
    assert not any(f"linears/{i}/bias" in paths(params) for i in range(num_layers - 1))
    assert len(jax.tree.leaves(stats)) == 2 * ((num_layers - 1) + last_bn)


def test_mlp_head_without_bn_has_biases_and_no_stats():
    head = MLPHead(8, 16, 4, num_layers=3, use_bn=False, rngs=nnx.Rngs(0))
    _, params, stats = split_module(head)
    assert {"linears/0/bias", "linears/1/bias", "linears/2/bias"} <= paths(params)
    assert jax.tree.leaves(stats) == []


def test_last_bn_without_affine_standardises_output():
    head = MLPHead(8, 16, 6, last_bn=True, last_bn_affine=False, rngs=nnx.Rngs(0))
    graphdef, params, stats = split_module(head)
    assert not any(p.startswith("last_norm") for p in paths(params))
    assert {"last_norm/mean", "last_norm/var"} <= paths(stats)
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (64, 8))
    out, _ = apply_module(graphdef, params, stats, x, train=True)
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.var(0), 1.0, atol=1e-3)
    plain = MLPHead(8, 16, 6, rngs=nnx.Rngs(0))
    out, _ = apply_module(*split_module(plain), x, train=True)
    assert not np.allclose(out.var(0), 1.0, atol=0.1)


def test_mlp_head_matches_hand_written_forward():
    head = MLPHead(5, 7, 3, num_layers=2, last_bn=False, rngs=nnx.Rngs(3))
    x = jax.random.normal(jax.random.key(1), (6, 5))
    h = np.asarray(x) @ np.asarray(head.linears[0].kernel[...])
    h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5)  # BN in train mode, gamma=1, beta=0
    h = np.maximum(h, 0.0)
    expected = h @ np.asarray(head.linears[1].kernel[...]) + np.asarray(head.linears[1].bias[...])
    out, _ = apply_module(*split_module(head), x, train=True)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("use_bn", [True, False])
def test_mlp_head_gradients_float64(use_bn):
    with jax.enable_x64(True):
        head = MLPHead(
            4,
            6,
            3,
            num_layers=3,
            use_bn=use_bn,
            last_bn=use_bn,
            dtype=jnp.float64,
            rngs=nnx.Rngs(0),
        )
        graphdef, params, stats = split_module(head)
        params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        stats = jax.tree.map(lambda s: s.astype(jnp.float64), stats)
        x = jax.random.normal(jax.random.key(2), (8, 4), dtype=jnp.float64)
        target = jax.random.normal(jax.random.key(3), (8, 3), dtype=jnp.float64)

        @jax.jit
        def loss(params, x):
            out, _ = apply_module(graphdef, params, stats, x, train=True)
            return jnp.sum((out - target) ** 2)

        assert jax.tree.leaves(jax.grad(loss)(params, x))[0].dtype == jnp.float64
        check_grads(loss, (params, x), order=1, modes=("rev",), eps=1e-6)


def test_mlp_head_rejects_zero_layers():
    with pytest.raises(ValueError, match="num_layers"):
        MLPHead(4, 4, 4, num_layers=0, rngs=nnx.Rngs(0))


def test_linear_classifier_shape_and_zero_init():
    clf = LinearClassifier(12, 10, rngs=nnx.Rngs(0))
    graphdef, params, stats = split_module(clf)
    assert jax.tree.leaves(stats) == []
    assert jax.tree.map(jnp.shape, nnx.to_pure_dict(params)) == {
        "linear": {"kernel": (12, 10), "bias": (10,)}
    }
    x = jax.random.normal(jax.random.key(0), (3, 12))
    logits, _ = apply_module(graphdef, params, stats, x, train=False)
    assert logits.shape == (3, 10)
    np.testing.assert_array_equal(logits, 0.0)
    grads = jax.grad(
        lambda p: (
            -jax.nn.log_softmax(apply_module(graphdef, p, stats, x, train=True)[0])[:, 0].sum()
        )
    )(params)
    assert float(jnp.abs(grads["linear"]["kernel"][...]).sum()) > 0
