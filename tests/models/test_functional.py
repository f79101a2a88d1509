"""Tests for ssl_jax.models.functional: split/merge, train/eval mode, jit, grad, sharding."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax.models import (
    BasicBlock,
    MLPHead,
    ResNet,
    VisionTransformer,
    apply_module,
    resnet18,
    split_module,
)
from tests.models.util import make_model, num_params


def tiny_resnet(*, rngs, **kwargs):
    return ResNet(stage_sizes=(1, 1), block=BasicBlock, width=8, stem="cifar", rngs=rngs, **kwargs)


def images(n=4, size=16, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, size, size, 3))


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_split_module_separates_params_and_batch_stats():
    model = tiny_resnet(rngs=nnx.Rngs(0))
    graphdef, params, stats = split_module(model)
    assert isinstance(graphdef, nnx.GraphDef)
    assert all(isinstance(v, nnx.Param) for _, v in nnx.to_flat_state(params))
    assert all(isinstance(v, nnx.BatchStat) for _, v in nnx.to_flat_state(stats))
    assert {p[-1] for p, _ in nnx.to_flat_state(stats)} == {"mean", "var"}
    assert num_params(params) == num_params(nnx.state(model, nnx.Param))
    assert num_params(stats) == 2 * (8 + 8 + 8 + 16 + 16 + 16)  # stem, block, block + shortcut


def test_split_module_rejects_other_state():
    class WithDropout(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(2, 2, rngs=rngs)
            self.dropout = nnx.Dropout(0.5, rngs=rngs)

    with pytest.raises(ValueError, match="neither nnx.Param nor nnx.BatchStat"):
        split_module(WithDropout(nnx.Rngs(0)))


def test_train_mode_updates_batch_stats_eval_mode_does_not():
    graphdef, params, stats = make_model(tiny_resnet, seed=0)
    x = images()
    out_train, new_stats = apply_module(graphdef, params, stats, x, train=True)
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), stats, new_stats)
    assert all(jax.tree.leaves(changed))

    out_eval, same_stats = apply_module(graphdef, params, new_stats, x, train=False)
    out_eval2, same_stats2 = apply_module(graphdef, params, new_stats, x, train=False)
    assert_trees_equal(same_stats, new_stats)
    assert_trees_equal(same_stats2, new_stats)
    np.testing.assert_array_equal(out_eval, out_eval2)
    assert not np.allclose(out_eval, out_train, atol=1e-3)
    # Eval output does not depend on the rest of the batch; train output does.
    np.testing.assert_allclose(
        apply_module(graphdef, params, new_stats, x[:1], train=False)[0], out_eval[:1], atol=1e-5
    )
    assert not np.allclose(
        apply_module(graphdef, params, stats, x[:2], train=True)[0], out_train[:2]
    )


def test_batch_norm_running_average_uses_momentum_0_9():
    head = MLPHead(5, 5, 3, num_layers=1, last_bn=True, rngs=nnx.Rngs(0))
    graphdef, params, stats = split_module(head)
    x = jax.random.normal(jax.random.key(0), (16, 5)) + 2.0
    _, new_stats = apply_module(graphdef, params, stats, x, train=True)
    y = np.asarray(x) @ np.asarray(params["linears"][0]["kernel"][...])
    np.testing.assert_allclose(new_stats["last_norm"]["mean"][...], 0.1 * y.mean(0), rtol=1e-5)
    np.testing.assert_allclose(
        new_stats["last_norm"]["var"][...], 0.9 + 0.1 * y.var(0), rtol=1e-5
    )  # Flax keeps the biased batch variance (PyTorch stores the unbiased one).


def test_apply_module_does_not_mutate_its_inputs():
    graphdef, params, stats = make_model(tiny_resnet, seed=0)
    snapshot = jax.tree.map(np.array, (params, stats))
    x = images()
    before = apply_module(graphdef, params, stats, x, train=False)[0]
    apply_module(graphdef, params, stats, x, train=True)
    assert_trees_equal(jax.tree.map(np.array, (params, stats)), snapshot)
    np.testing.assert_array_equal(apply_module(graphdef, params, stats, x, train=False)[0], before)


@pytest.mark.slow  # a ResNet value-and-grad to compile (about 9 s)
def test_jit_value_and_grad_with_batch_norm_in_train_mode():
    graphdef, params, stats = make_model(resnet18, seed=0, width=8, stem="cifar")
    x = images(n=4, size=16)
    target = jax.random.normal(jax.random.key(1), (4, 64))

    def loss_fn(params, stats, x):
        out, new_stats = apply_module(graphdef, params, stats, x, train=True)
        return jnp.mean((out - target) ** 2), new_stats

    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss, new_stats), grads = step(params, stats, x)
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: not np.allclose(a, b), stats, new_stats)))

    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert float(optax.tree.norm(grads)) > 0
    # The stem and every zero-initialised last-BN scale receive gradient.
    assert float(jnp.abs(grads["conv1"]["kernel"][...]).max()) > 0
    for stage in grads["stages"].values():
        for block in stage.values():
            assert float(jnp.abs(block["bn2"]["scale"][...]).max()) > 0

    # optax works on nnx.State directly, and a small step lowers the loss.
    tx = optax.sgd(0.05)
    updates, _ = tx.update(grads, tx.init(params), params)
    new_params = optax.apply_updates(params, updates)
    assert jax.tree.structure(new_params) == jax.tree.structure(params)
    (new_loss, _), _ = step(new_params, stats, x)
    assert float(new_loss) < float(loss)


def test_orbax_standard_save_round_trip(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    _, params, stats = make_model(tiny_resnet, seed=0)
    tree = {"params": params, "batch_stats": stats}
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(tmp_path / "state", tree)
    with ocp.StandardCheckpointer() as ckpt:
        restored = ckpt.restore(tmp_path / "state", jax.eval_shape(lambda: tree))
        assert_trees_equal(restored, tree)


def test_sharded_params_and_batch_split_inputs():
    devices = jax.devices()
    assert len(devices) == 8
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    replicated = NamedSharding(mesh, P())
    batch_sharded = NamedSharding(mesh, P("data"))

    graphdef, params, stats = make_model(tiny_resnet, seed=0)
    params_r = jax.device_put(params, replicated)
    stats_r = jax.device_put(stats, replicated)
    assert_trees_equal(params_r, params)
    assert_trees_equal(stats_r, stats)
    assert all(x.sharding == replicated for x in jax.tree.leaves((params_r, stats_r)))

    x = images(n=16)
    x_sharded = jax.device_put(x, batch_sharded)
    assert len(x_sharded.addressable_shards) == 8

    @partial(jax.jit, static_argnames="train")
    def forward(params, stats, x, *, train):
        return apply_module(graphdef, params, stats, x, train=train)

    out, new_stats = forward(params_r, stats_r, x_sharded, train=True)
    ref_out, ref_stats = apply_module(graphdef, params, stats, x, train=True)
    assert out.shape == (16, 16)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
    # BatchNorm statistics are over the global batch, not per device.
    jax.tree.map(partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), new_stats, ref_stats)
    out_eval, _ = forward(params_r, new_stats, x_sharded, train=False)
    np.testing.assert_allclose(
        out_eval, apply_module(graphdef, params, ref_stats, x, train=False)[0], rtol=1e-5, atol=1e-6
    )


class CountingViT(VisionTransformer):
    """A ViT counting how often it is traced (a class of its own: a fresh jit cache entry)."""

    traces = 0

    def __call__(self, x, **kwargs):
        type(self).traces += 1
        return super().__call__(x, **kwargs)


def test_array_kwargs_are_traced_not_static():
    vit = {"img_size": 8, "patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2}
    model = nnx.eval_shape(lambda: CountingViT(**vit, drop_path_rate=0.5, rngs=nnx.Rngs(0)))
    graphdef, params, stats = split_module(model)
    rng = np.random.default_rng(0)  # NumPy: an initialisation would compile a program
    params = jax.tree.map(lambda p: rng.normal(0, 0.2, p.shape).astype(np.float32), params)
    x = images(n=2, size=8)
    first = np.array([[0, 1], [2, 3]], np.int32)
    second = np.array([[3, 1], [0, 2]], np.int32)

    # keep_indices (NumPy or jax) and a typed key are traced: new values reuse the program;
    # return_all stays static.
    def run(indices, key):
        out, _ = apply_module(
            graphdef, params, stats, x, train=True, return_all=True, keep_indices=indices, rngs=key
        )
        return out["pooled"]

    out1 = run(first, jax.random.key(0))
    out2 = run(jnp.asarray(second), jax.random.key(1))
    assert CountingViT.traces == 1
    assert not np.allclose(out1, out2, atol=1e-3)

    # Under an outer jit the indices and the key are tracers, passed through as such.
    outer_traces = []

    @jax.jit
    def outer(params, indices, key):
        outer_traces.append(1)
        out, _ = apply_module(
            graphdef, params, stats, x, train=True, return_all=True, keep_indices=indices, rngs=key
        )
        return out["pooled"]

    for indices, seed in ((first, 0), (second, 1), (first, 1)):
        np.testing.assert_allclose(
            outer(params, indices, jax.random.key(seed)),
            run(indices, jax.random.key(seed)),
            rtol=1e-6,
            atol=1e-6,
        )
    assert len(outer_traces) == 1
    assert CountingViT.traces <= 2  # at most once more, inside the outer trace
