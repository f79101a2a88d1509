import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.data import make_digits_source
from ssl_jax.methods import get_method
from ssl_jax.methods.momentum import cosine_momentum
from ssl_jax.methods.networks import apply_chain, mlp_head
from ssl_jax.methods.registry import make_views
from tests.losses.test_regression import byol_reference
from tests.programs.tiny import tiny_pretrain_config

BYOL = {
    "method.name": "byol",
    "method.pred_hidden_dim": 16,
    "method.base_momentum": 0.9,
    "augment.recipe": "byol",
}
# tests/methods/test_devices.py runs these 1 and 8 devices. SGD, not the tiny config's AdamW:
# the online projector's last bias has an analytically zero gradient (the predictor's
# BatchNorm removes it), so its gradient is float noise that differs between 1 and 8 devices;
# Adam's first steps turn noise into +-lr updates, which reach the loss through the EMA target
# (relative loss difference ~6e-5).
DEVICE_CONFIGS = {"byol": {**BYOL, "optim.name": "sgd", "optim.base_learning_rate": 0.05}}


def byol_config(**overrides):
    return tiny_pretrain_config(**{**BYOL, **overrides})


@pytest.fixture(scope="module")
def setup():
    method = get_method(byol_config(), total_steps=10)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    params, state = jax.jit(method.init)(jax.random.key(0))
    return method, {"images": jnp.asarray(images)}, params, state


def test_cosine_momentum_schedule():
    kw = dict(base_momentum=0.99, total_steps=100)
    np.testing.assert_allclose(cosine_momentum(0, **kw), 0.99, rtol=1e-6)
    np.testing.assert_allclose(cosine_momentum(50, **kw), 1 - 0.01 / 2, rtol=1e-6)
    np.testing.assert_allclose(cosine_momentum(100, **kw), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        cosine_momentum(30, **kw), 1 - 0.01 * (np.cos(np.pi * 0.3) + 1) / 2, rtol=1e-6
    )


def test_target_starts_as_a_copy_and_follows_the_ema_formula(setup):
    method, _, params, state = setup
    for name in ("backbone", "projector"):
        for a, b in zip(
            jax.tree.leaves(state["target"][name]), jax.tree.leaves(params[name]), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    moved = jax.tree.map(lambda p: p + 1.0, params)
    step = 3
    new = method.update_state(moved, state, step)
    tau = 1 - (1 - 0.9) * (np.cos(np.pi * step / 10) + 1) / 2
    for name in ("backbone", "projector"):
        for t_new, t_old, online in zip(
            jax.tree.leaves(new["target"][name]),
            jax.tree.leaves(state["target"][name]),
            jax.tree.leaves(moved[name]),
            strict=True,
        ):
            np.testing.assert_allclose(
                t_new, tau * t_old + (1 - tau) * online, rtol=1e-5, atol=1e-7
            )
    assert "predictor" not in new["target"]


@pytest.mark.slow  # a gradient of every part to compile (about 15 s)
def test_target_gets_exactly_zero_gradient(setup):
    method, batch, params, state = setup
    key = jax.random.key(1)

    def loss_of_target(target):
        return method.loss(params, {**state, "target": target}, batch, key, 0, None)[0]

    target_grads = jax.grad(loss_of_target)(state["target"])
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(target_grads))
    online_grads = jax.grad(lambda p: method.loss(p, state, batch, key, 0, None)[0])(params)
    assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(online_grads["predictor"]))


@pytest.mark.slow  # a train step to compile (about 10 s)
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(setup):
    method, batch, params, state = setup
    tx = optax.adam(1e-2)
    key = jax.random.key(2)

    @jax.jit
    def step(params, opt, state, i):
        (loss, (state, _)), g = jax.value_and_grad(method.loss, has_aux=True)(
            params, state, batch, key, 0, None
        )
        updates, opt = tx.update(g, opt, params)
        params = optax.apply_updates(params, updates)
        return params, opt, method.update_state(params, state, i), loss

    opt = tx.init(params)
    losses = []
    for i in range(8):
        params, opt, state, loss = step(params, opt, state, i)
        losses.append(float(loss))
    assert 0 <= losses[-1] < losses[0] - 0.2, losses
    assert losses[0] <= 8.0  # two terms of 2 - 2 cos, each at most 4


def test_export_online_or_target(setup):
    method, _, params, state = setup
    assert method.export(params, state)["params"] is params["backbone"]
    target = get_method(byol_config(**{"export.network": "target"}), total_steps=10)
    assert target.export(params, state)["params"] is state["target"]["backbone"]
    with pytest.raises(ValueError, match="total_steps"):
        get_method(byol_config())
    with pytest.raises(ValueError, match="'online' or 'target'"):
        get_method(byol_config(**{"export.network": "teacher"}), total_steps=10)


def test_loss_is_the_swapped_prediction_by_hand(setup):
    """BYOL eq. 2, symmetrised: the online prediction of view 1 regresses the target projection
    of view 2 and vice versa (NumPy on embeddings computed from the parts outside the method)."""
    method, batch, params, state = setup
    config = byol_config()
    hp = config.method
    key = jax.random.key(4)
    value, _ = jax.jit(method.loss)(params, state, batch, key, 0, None)
    fd = method.backbone.feature_dim
    parts = {
        "backbone": method.backbone,
        "projector": mlp_head(fd, hp.proj_hidden_dim, hp.proj_dim),
        "predictor": mlp_head(hp.proj_dim, hp.pred_hidden_dim, hp.proj_dim),
    }
    x = jnp.concatenate(make_views(config.augment, config.method.name)(batch["images"], key))
    online = ("backbone", "projector", "predictor")
    p, _ = apply_chain(parts, online, params, state["batch_stats"], x)
    target = ("backbone", "projector")
    z, _ = apply_chain(parts, target, state["target"], state["target_batch_stats"], x)
    p1, p2 = np.split(np.asarray(p), 2)
    z1, z2 = np.split(np.asarray(z), 2)
    want = byol_reference(p1, z2) + byol_reference(p2, z1)
    np.testing.assert_allclose(float(value), want, rtol=1e-5)
    unswapped = byol_reference(p1, z1) + byol_reference(p2, z2)
    assert abs(unswapped - want) > 1e-3  # the check can tell the pairings apart
