"""W-MSE: the loss by hand (the authors' whitening loop) on the two views' embeddings, and its
hyperparameter checks. Eager unit tests on the tiny config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.data import make_digits_source
from ssl_jax.methods import get_method
from ssl_jax.methods.common import embed_views
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.registry import make_views
from tests.losses.test_whitening import wmse_reference
from tests.programs.tiny import tiny_pretrain_config

WMSE = {"method.name": "wmse", "method.w_size": 16, "method.w_iter": 2}
# tests/methods/test_devices.py runs these 1 and 8 devices (one sub-batch of the 16 images).
DEVICE_CONFIGS = {"wmse": {"method.w_size": 16}}


def test_loss_is_the_authors_wmse_of_the_two_views_by_hand():
    config = tiny_pretrain_config(**WMSE)
    method = get_method(config)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    batch = {"images": jnp.asarray(images)}
    params, state = method.init(jax.random.key(0))
    key = jax.random.key(4)
    value, (new_state, _) = method.loss(params, state, batch, key, 0, None)
    hp = config.method
    parts = {
        "backbone": method.backbone,
        "projector": mlp_head(method.backbone.feature_dim, hp.proj_hidden_dim, hp.proj_dim),
    }
    view_key, whitening_key = jax.random.split(key)
    views = make_views(config.augment, hp.name)(batch["images"], view_key)
    (z1, z2), _ = embed_views(parts, ("backbone", "projector"), params, state["batch_stats"], views)
    z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
    permutations = [jax.random.permutation(k, 16) for k in jax.random.split(whitening_key, 2)]
    want = wmse_reference(z1, z2, permutations, hp.w_size)
    np.testing.assert_allclose(float(value), want, rtol=1e-4)
    assert abs(wmse_reference(z1, np.roll(z2, 1, axis=0), permutations, 16) - want) > 1e-2
    assert set(new_state) == {"batch_stats"}
    assert method.update_state(params, new_state, 0) is new_state


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"method.w_size": 12}, r"w_size=12 must divide data.batch_size=16"),
        ({"method.w_size": 8}, r"w_size=8 must exceed method.proj_dim=8"),
        ({"method.w_iter": 0}, "w_iter=0 must be >= 1"),
    ],
)
def test_bad_hyperparameters_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        get_method(tiny_pretrain_config(**{**WMSE, **overrides}))
