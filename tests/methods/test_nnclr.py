"""NNCLR: the nearest-neighbour positive by hand, the support set's push, no gradient through
the neighbour. Unit tests run eagerly (cheaper on 2 CPU cores than compiling per test)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.data import make_digits_source
from ssl_jax.methods import get_method
from ssl_jax.methods.common import embed_views
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.nnclr import nearest_neighbours
from ssl_jax.methods.registry import make_views
from tests.programs.tiny import tiny_pretrain_config

NNCLR = {"method.name": "nnclr", "method.pred_hidden_dim": 16, "method.queue_length": 32}
# tests/methods/test_devices.py runs these 1 and 8 devices (batch 16: 3 steps wrap the queue),
# without the projector's last BatchNorm bias: its gradient is analytically zero, so AdamW
# turns float noise, which differs between 1 and 8 devices, into +-lr updates that reach the
# loss through the support set (the third step's loss then differs by 4e-5 relative).
DEVICE_CONFIGS = {"nnclr": {**NNCLR, "method.proj_last_bn_affine": False}}


@pytest.fixture(scope="module")
def setup():
    config = tiny_pretrain_config(**NNCLR)
    method = get_method(config)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    params, state = method.init(jax.random.key(0))
    return config, method, {"images": jnp.asarray(images)}, params, state


def projections(config, method, params, state, batch, key):
    """``(z1, z2, p1, p2)`` of the views of ``key``, rebuilt from the parts outside the method."""
    hp = config.method
    parts = {
        "backbone": method.backbone,
        "projector": mlp_head(
            method.backbone.feature_dim, hp.proj_hidden_dim, hp.proj_dim, num_layers=3, last_bn=True
        ),
        "predictor": mlp_head(hp.proj_dim, hp.pred_hidden_dim, hp.proj_dim),
    }
    views = make_views(config.augment, hp.name)(batch["images"], key)
    (z1, z2), stats = embed_views(
        parts, ("backbone", "projector"), params, state["batch_stats"], views
    )
    (p1, p2), _ = embed_views(parts, ("predictor",), params, stats, (z1, z2))
    return tuple(np.asarray(x, np.float64) for x in (z1, z2, p1, p2))


def nnclr_reference(z1, z2, p1, p2, support, tau):
    """Dwibedi et al. 2021 eq. 1 with the predictor, symmetrised, in NumPy float64:
    ``-log exp(NN(z_i)·p_i+/τ) / Σ_k exp(NN(z_i)·p_k+/τ)``, NN by cosine in the support set."""
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)

    def term(z, p):
        nn = support[np.argmax(unit(z) @ unit(support).T, axis=1)]
        scores = unit(nn) @ unit(p).T / tau
        return np.mean(np.log(np.exp(scores).sum(axis=1)) - np.diag(scores))

    return 0.5 * (term(z1, p2) + term(z2, p1))


def test_loss_is_the_papers_nearest_neighbour_infonce_by_hand(setup):
    config, method, batch, params, state = setup
    key = jax.random.key(4)
    value, _ = method.loss(params, state, batch, key, 0, None)
    z1, z2, p1, p2 = projections(config, method, params, state, batch, key)
    support = np.asarray(state["queue"][0], np.float64)
    tau = config.method.temperature
    want = nnclr_reference(z1, z2, p1, p2, support, tau)
    np.testing.assert_allclose(float(value), want, rtol=1e-5)
    # The check tells the neighbour from the view itself (SimCLR's positive) apart.
    own = nnclr_reference(z1, z2, p1, p2, np.concatenate([z1, z2]), tau)
    assert abs(own - want) > 1e-2


def test_loss_pushes_the_first_views_projections_fifo(setup):
    config, method, batch, params, state = setup
    assert state["queue"].shape == (1, 32, 8) and int(state["queue_ptr"]) == 0
    np.testing.assert_allclose(jnp.linalg.norm(state["queue"], axis=-1), 1.0, rtol=1e-5)
    key = jax.random.key(1)
    _, (new, _) = method.loss(params, state, batch, key, 0, None)
    z1 = projections(config, method, params, state, batch, key)[0]
    assert int(new["queue_ptr"]) == 16
    np.testing.assert_allclose(
        new["queue"][0, :16], z1 / np.linalg.norm(z1, axis=-1, keepdims=True), atol=1e-5
    )
    np.testing.assert_array_equal(new["queue"][0, 16:], state["queue"][0, 16:])
    _, (newer, _) = method.loss(params, new, batch, jax.random.key(2), 1, None)
    _, (wrapped, _) = method.loss(params, newer, batch, jax.random.key(3), 2, None)
    assert int(newer["queue_ptr"]) == 0 and int(wrapped["queue_ptr"]) == 16
    np.testing.assert_array_equal(newer["queue"][0, :16], new["queue"][0, :16])
    assert not np.allclose(wrapped["queue"][0, :16], newer["queue"][0, :16])  # oldest replaced


def test_the_neighbour_is_a_support_row_and_carries_no_gradient(setup):
    _, method, batch, params, state = setup
    rng = np.random.default_rng(0)
    support = rng.normal(size=(10, 4)).astype(np.float32)
    support /= np.linalg.norm(support, axis=-1, keepdims=True)
    z = 3.0 * support[[7, 2, 2]] + 0.01 * rng.normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_array_equal(nearest_neighbours(z, support), support[[7, 2, 2]])
    grads = jax.grad(lambda z, s: jnp.sum(nearest_neighbours(z, s)), argnums=(0, 1))(z, support)
    assert all(bool(jnp.all(g == 0)) for g in grads)

    def loss(params, queue):
        return method.loss(params, {**state, "queue": queue}, batch, jax.random.key(1), 0, None)[0]

    param_grads, queue_grad = jax.grad(loss, argnums=(0, 1))(params, state["queue"])
    assert bool(jnp.all(queue_grad == 0))
    assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(param_grads["projector"]))


def test_queue_length_must_be_a_multiple_of_the_global_batch():
    with pytest.raises(ValueError, match=r"queue_length=40 .* data.batch_size=16.*Use e.g. 48"):
        get_method(tiny_pretrain_config(**{**NNCLR, "method.queue_length": 40}))


@pytest.mark.slow  # a train step to compile (about 7 s)
def test_a_short_run_is_finite_and_update_state_changes_nothing(setup):
    _, method, batch, params, state = setup
    tx = optax.adam(1e-2)

    @jax.jit
    def step(params, opt, state, key, i):
        (loss, (state, metrics)), g = jax.value_and_grad(method.loss, has_aux=True)(
            params, state, batch, key, i, None
        )
        updates, opt = tx.update(g, opt, params)
        params = optax.apply_updates(params, updates)
        return params, opt, method.update_state(params, state, i), loss, metrics

    opt = tx.init(params)
    assert method.update_state(params, state, 0) is state  # the push happens in loss
    for i in range(4):
        params, opt, state, loss, metrics = step(params, opt, state, jax.random.key(i), i)
        assert np.isfinite(float(loss)) and np.isfinite(float(metrics["nn_cosine"]))
    assert int(state["queue_ptr"]) == (4 * 16) % 32
    assert np.all(np.isfinite(state["queue"]))
