"""TiCo: the loss and the running covariance by hand, no gradient into the stored covariance.
Unit tests run eagerly on the tiny config (cheaper on 2 CPU cores than compiling per test)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.data import make_digits_source
from ssl_jax.methods import get_method
from ssl_jax.methods.common import embed_views
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.registry import make_views
from tests.losses.test_redundancy import tico_reference
from tests.programs.tiny import tiny_pretrain_config

# tests/methods/test_devices.py runs these 1 and 8 devices.
DEVICE_CONFIGS = {"tico": {}}


@pytest.fixture(scope="module")
def setup():
    config = tiny_pretrain_config(**{"method.name": "tico"})
    method = get_method(config)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    params, state = method.init(jax.random.key(0))
    rng = np.random.default_rng(0)  # a non-trivial previous covariance
    previous = rng.normal(size=(8, 8)).astype(np.float32)
    state = {**state, "covariance": jnp.asarray(previous @ previous.T / 64)}
    return config, method, {"images": jnp.asarray(images)}, params, state


def embeddings(config, method, params, state, batch, key):
    hp = config.method
    parts = {
        "backbone": method.backbone,
        "projector": mlp_head(method.backbone.feature_dim, hp.proj_hidden_dim, hp.proj_dim),
    }
    views = make_views(config.augment, hp.name)(batch["images"], key)
    (z1, z2), _ = embed_views(parts, ("backbone", "projector"), params, state["batch_stats"], views)
    return np.asarray(z1, np.float64), np.asarray(z2, np.float64)


def test_loss_covariance_update_and_gradients_are_the_papers(setup):
    """One step by hand: the loss and C_t against NumPy; the stored C_{t-1} gets exactly zero
    gradient, the projector a gradient."""
    config, method, batch, params, state = setup
    key = jax.random.key(4)

    def loss(params, covariance):
        return method.loss(params, {**state, "covariance": covariance}, batch, key, 0, None)

    (value, (new_state, metrics)), (param_grads, covariance_grad) = jax.value_and_grad(
        loss, argnums=(0, 1), has_aux=True
    )(params, state["covariance"])
    z1, z2 = embeddings(config, method, params, state, batch, key)
    beta, rho = config.method.beta, config.method.rho
    previous = np.asarray(state["covariance"], np.float64)
    want, covariance = tico_reference(z1, z2, previous, beta, rho)
    np.testing.assert_allclose(float(value), want, rtol=1e-5)
    np.testing.assert_allclose(new_state["covariance"], covariance, rtol=1e-5, atol=1e-7)
    assert new_state["covariance"].dtype == state["covariance"].dtype == jnp.float32
    assert np.isfinite(float(metrics["covariance_trace"]))
    # The check tells the views apart (the first view is the contrasted one).
    swapped, _ = tico_reference(z2, z1, previous, beta, rho)
    assert abs(swapped - want) > 1e-3
    assert method.update_state(params, new_state, 0) is new_state  # the update is in loss
    assert bool(jnp.all(covariance_grad == 0))
    assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(param_grads["projector"]))


@pytest.mark.parametrize(
    "field, value, message", [("beta", 1.0, r"beta=1.0 must be in \[0, 1\)"), ("rho", -1.0, "rho")]
)
def test_bad_hyperparameters_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        get_method(tiny_pretrain_config(**{"method.name": "tico", f"method.{field}": value}))
