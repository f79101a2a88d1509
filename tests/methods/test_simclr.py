import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.data import make_digits_source
from ssl_jax.losses import nt_xent
from ssl_jax.methods import get_method
from ssl_jax.methods.common import embed_views
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.registry import make_views
from tests.losses.test_contrastive import dcl_reference, nt_xent_reference
from tests.programs.tiny import tiny_pretrain_config

# tests/methods/test_devices.py runs these 1 and 8 devices.
DEVICE_CONFIGS = {"simclr": {}}


@pytest.fixture(scope="module")
def setup():
    method = get_method(tiny_pretrain_config())
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    params, state = jax.jit(method.init)(jax.random.key(0))
    return method, {"images": jnp.asarray(images)}, params, state


def test_structure_and_export(setup):
    method, _, params, state = setup
    assert set(params) == {"backbone", "projector"}
    assert set(state["batch_stats"]) == {"backbone", "projector"}
    export = method.export(params, state)
    assert export["params"] is params["backbone"]
    assert export["batch_stats"] is state["batch_stats"]["backbone"]
    assert method.update_state(params, state, 0) is state


def test_loss_is_deterministic_in_the_key_and_updates_bn(setup):
    method, batch, params, state = setup
    key = jax.random.key(1)
    loss, (new_state, metrics) = jax.jit(method.loss)(params, state, batch, key, 0, None)
    assert np.isfinite(loss) and 0.0 < metrics["embedding_std"]
    again, _ = jax.jit(method.loss)(params, state, batch, key, 0, None)
    other, _ = jax.jit(method.loss)(params, state, batch, jax.random.key(9), 0, None)
    assert float(again) == float(loss)  # same key, same views
    assert float(other) != float(loss)  # the key drives the augmentations
    # BatchNorm statistics moved (train mode), the input state was not modified.
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new_state, state)
    assert any(jax.tree.leaves(changed))


@pytest.mark.slow  # a train step to compile (about 7 s)
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(setup):
    method, batch, params, state = setup
    tx = optax.adam(1e-2)
    key = jax.random.key(2)

    @jax.jit
    def step(params, opt, state):
        (loss, (state, _)), g = jax.value_and_grad(method.loss, has_aux=True)(
            params, state, batch, key, 0, None
        )
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), opt, state, loss

    opt = tx.init(params)
    losses = []
    for _ in range(8):
        params, opt, state, loss = step(params, opt, state)
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.2, losses


def test_temperature_is_used():
    a = get_method(tiny_pretrain_config(**{"method.temperature": 0.1}))
    b = get_method(tiny_pretrain_config(**{"method.temperature": 1.0}))
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    params, state = a.init(jax.random.key(0))
    batch, key = {"images": jnp.asarray(images)}, jax.random.key(1)
    la, _ = a.loss(params, state, batch, key, 0, None)
    lb, _ = b.loss(params, state, batch, key, 0, None)
    assert not np.isclose(float(la), float(lb))
    z = jnp.eye(4)
    assert float(nt_xent(z, z, temperature=0.1)) < float(nt_xent(z, z, temperature=1.0))


def test_needs_two_views():
    with pytest.raises(ValueError, match="unknown augmentation recipe"):
        get_method(tiny_pretrain_config(**{"augment.recipe": "nope"}))


def test_export_network_must_exist():
    with pytest.raises(ValueError, match="only the online network"):
        get_method(tiny_pretrain_config(**{"export.network": "target"}))


def test_loss_is_nt_xent_of_matching_views_by_hand(setup):
    """The method's loss equals SimCLR's Algorithm 1 (NumPy) on the embeddings of the two views,
    row i of view 1 paired with row i of view 2 (a misaligned pairing gives another value)."""
    method, batch, params, state = setup
    config = tiny_pretrain_config()
    key = jax.random.key(4)
    value, _ = jax.jit(method.loss)(params, state, batch, key, 0, None)
    parts = {
        "backbone": method.backbone,
        "projector": mlp_head(
            method.backbone.feature_dim, config.method.proj_hidden_dim, config.method.proj_dim
        ),
    }
    views = make_views(config.augment, config.method.name)(batch["images"], key)
    (z1, z2), _ = embed_views(parts, ("backbone", "projector"), params, state["batch_stats"], views)
    z1, z2 = np.asarray(z1), np.asarray(z2)
    want = nt_xent_reference(z1, z2, config.method.temperature)
    np.testing.assert_allclose(float(value), want, rtol=1e-5)
    shifted = nt_xent_reference(z1, np.roll(z2, 1, axis=0), config.method.temperature)
    assert abs(shifted - want) > 1e-2  # the check can tell the two pairings apart


@pytest.mark.parametrize("loss, sigma", [("dcl", None), ("dclw", 0.5)])
def test_dcl_and_dclw_losses_are_the_papers_on_the_same_embeddings(setup, loss, sigma):
    """``method.loss="dcl"``/``"dclw"``: Yeh et al. 2022 eq. 6/7-8 (NumPy) on the embeddings
    SimCLR's parts give, the same networks and views (so the same parameters)."""
    method, batch, params, state = setup
    config = tiny_pretrain_config(**{"method.loss": loss})
    dcl = get_method(config)
    key = jax.random.key(4)
    value, _ = dcl.loss(params, state, batch, key, 0, None)
    parts = {
        "backbone": method.backbone,
        "projector": mlp_head(
            method.backbone.feature_dim, config.method.proj_hidden_dim, config.method.proj_dim
        ),
    }
    views = make_views(config.augment, config.method.name)(batch["images"], key)
    (z1, z2), _ = embed_views(parts, ("backbone", "projector"), params, state["batch_stats"], views)
    z1, z2 = np.asarray(z1), np.asarray(z2)
    want = dcl_reference(z1, z2, config.method.temperature, sigma)
    np.testing.assert_allclose(float(value), want, rtol=1e-5)
    assert abs(nt_xent_reference(z1, z2, config.method.temperature) - want) > 1e-2


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match=r"method.loss='nce' is not one of \('nt_xent'"):
        get_method(tiny_pretrain_config(**{"method.loss": "nce"}))
    with pytest.raises(ValueError, match="sigma=0.0 must be > 0"):
        get_method(tiny_pretrain_config(**{"method.loss": "dclw", "method.sigma": 0.0}))
