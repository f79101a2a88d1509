"""SimSiam, Barlow Twins and VICReg: losses wired to the right outputs, training lowers them."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.data import make_digits_source
from ssl_jax.losses import barlow_twins_loss, simsiam_loss, vicreg_loss
from ssl_jax.methods import get_method
from ssl_jax.methods.common import embed_views, embedding_std, mean_cosine
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.registry import make_views
from tests.programs.tiny import tiny_pretrain_config

OVERRIDES = {
    "simsiam": {"method.pred_hidden_dim": 4},
    "barlow_twins": {"method.lambda_": 5e-3, "method.scale_loss": 0.1},
    "vicreg": {"method.sim_coeff": 25.0, "method.std_coeff": 25.0, "method.cov_coeff": 1.0},
}
# tests/methods/test_devices.py runs these 1 and 8 devices.
DEVICE_CONFIGS = OVERRIDES


def build(name):
    config = tiny_pretrain_config(**{"method.name": name, **OVERRIDES[name]})
    method = get_method(config)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    params, state = jax.jit(method.init)(jax.random.key(0))
    return method, config, {"images": jnp.asarray(images)}, params, state


def hand_computed_loss(name, method, config, batch, params, state, key):
    """The method's loss rebuilt from its parts and the library loss functions."""
    views = make_views(config.augment, name)(batch["images"], key)
    fd = method.backbone.feature_dim
    if name == "simsiam":
        proj = mlp_head(
            fd,
            config.method.proj_hidden_dim,
            config.method.proj_dim,
            num_layers=3,
            last_bn=True,
            last_bn_affine=False,
        )
        pred = mlp_head(
            config.method.proj_dim, config.method.pred_hidden_dim, config.method.proj_dim
        )
        parts = {"backbone": method.backbone, "projector": proj, "predictor": pred}
        (z1, z2), stats = embed_views(
            parts, ("backbone", "projector"), params, state["batch_stats"], views
        )
        (p1, p2), _ = embed_views(parts, ("predictor",), params, stats, (z1, z2))
        return 0.5 * (simsiam_loss(p1, z2) + simsiam_loss(p2, z1))
    parts = {
        "backbone": method.backbone,
        "projector": mlp_head(
            fd, config.method.proj_hidden_dim, config.method.proj_dim, num_layers=3
        ),
    }
    (z1, z2), _ = embed_views(parts, ("backbone", "projector"), params, state["batch_stats"], views)
    if name == "barlow_twins":
        return 0.1 * barlow_twins_loss(z1, z2, lambda_=config.method.lambda_)
    return vicreg_loss(z1, z2, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0)


# SimSiam's and Barlow Twins' compile for about 12 s each: the slow job checks them.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("barlow_twins", marks=pytest.mark.slow),
        pytest.param("simsiam", marks=pytest.mark.slow),
        pytest.param("vicreg", marks=pytest.mark.slow),  # 10 s each: the slow job
    ],
)
def test_loss_is_the_library_loss_of_the_embeddings(name):
    method, config, batch, params, state = build(name)
    key = jax.random.key(1)
    value, (new_state, metrics) = jax.jit(method.loss)(params, state, batch, key, 0, None)
    want = hand_computed_loss(name, method, config, batch, params, state, key)
    np.testing.assert_allclose(float(value), float(want), rtol=1e-5)
    assert metrics["embedding_std"] > 0
    assert set(new_state) == {"batch_stats"}


def test_simsiam_is_symmetric_negative_cosine_with_stopped_targets():
    method, config, batch, params, state = build("simsiam")
    key = jax.random.key(3)
    value, _ = method.loss(params, state, batch, key, 0, None)
    assert -1.0 <= float(value) <= 1.0
    grads = jax.grad(lambda p: method.loss(p, state, batch, key, 0, None)[0])(params)
    assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads["predictor"]))


@pytest.mark.slow  # about 7 s each; the losses are recomputed by hand in the default tests
@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(name):
    method, _, batch, params, state = build(name)
    tx = optax.adam(1e-2)
    key = jax.random.key(2)

    @jax.jit
    def step(params, opt, state):
        (loss, (state, metrics)), g = jax.value_and_grad(method.loss, has_aux=True)(
            params, state, batch, key, 0, None
        )
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), opt, state, loss, metrics

    opt = tx.init(params)
    losses = []
    for _ in range(8):
        params, opt, state, loss, metrics = step(params, opt, state)
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.05 * abs(losses[0]), losses
    if name == "vicreg":
        assert {"vicreg_invariance", "vicreg_variance", "vicreg_covariance"} <= set(metrics)


def test_embed_views_runs_both_views_as_one_batch():
    method, config, batch, params, state = build("barlow_twins")
    parts = {"backbone": method.backbone}
    x = jnp.ones((4, 8, 8, 3))
    (a, b), _ = embed_views(parts, ("backbone",), params, state["batch_stats"], (x, x + 1))
    assert a.shape == b.shape == (4, method.backbone.feature_dim)
    assert not np.allclose(a, b)


def test_mean_cosine_and_embedding_std_match_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    na = a / np.linalg.norm(a, axis=1, keepdims=True)
    nb = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(mean_cosine(a, 3.0 * b), np.mean(np.sum(na * nb, 1)), rtol=1e-5)
    np.testing.assert_allclose(mean_cosine(a, a), 1.0, rtol=1e-6)
    np.testing.assert_allclose(embedding_std(a), np.mean(np.std(na, axis=0)), rtol=1e-5)
    np.testing.assert_allclose(embedding_std(np.tile(a[:1], (4, 1))), 0.0, atol=1e-7)


def test_simsiam_stops_the_gradient_of_the_target_branch():
    """With the predictor's last kernel zeroed and its bias set to ones, its output is that
    constant, so the only path from the encoder to the loss is the target branch
    z = sg(projector(backbone(x))): SimSiam's stop-gradient must leave the encoder an exactly
    zero gradient (without it, -cos(1, z) pulls every z towards the ones vector)."""
    method, _, batch, params, state = build("simsiam")

    def constant_predictor(path, x):
        names = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in path]
        if names[:3] == ["predictor", "linears", 1]:
            return jnp.zeros_like(x) if names[3] == "kernel" else jnp.ones_like(x)
        return x

    params = jax.tree_util.tree_map_with_path(constant_predictor, params)
    grads = jax.grad(lambda p: method.loss(p, state, batch, jax.random.key(3), 0, None)[0])(params)
    for name in ("backbone", "projector"):
        assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(grads[name])), name
    bias_grad = jax.tree.leaves(grads["predictor"]["linears"][1]["bias"])
    assert all(bool(jnp.any(g != 0)) for g in bias_grad)  # the predictor still learns
