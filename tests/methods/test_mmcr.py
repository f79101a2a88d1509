"""MMCR: the loss by hand on the two views' embeddings. Eager unit tests on the tiny config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.data import make_digits_source
from ssl_jax.methods import get_method
from ssl_jax.methods.common import embed_views
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.registry import make_views
from tests.losses.test_capacity import mmcr_reference
from tests.programs.tiny import tiny_pretrain_config

MMCR = {"method.name": "mmcr", "method.lambda_": 0.1}
# tests/methods/test_devices.py runs these 1 and 8 devices.
DEVICE_CONFIGS = {"mmcr": {"method.lambda_": 0.1}}


def test_loss_is_the_authors_mmcr_of_the_two_views_by_hand():
    config = tiny_pretrain_config(**MMCR)
    method = get_method(config)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    batch = {"images": jnp.asarray(images)}
    params, state = method.init(jax.random.key(0))
    key = jax.random.key(4)
    (value, (new_state, metrics)), grads = jax.value_and_grad(method.loss, has_aux=True)(
        params, state, batch, key, 0, None
    )
    hp = config.method
    parts = {
        "backbone": method.backbone,
        "projector": mlp_head(method.backbone.feature_dim, hp.proj_hidden_dim, hp.proj_dim),
    }
    views = make_views(config.augment, hp.name)(batch["images"], key)
    (z1, z2), _ = embed_views(parts, ("backbone", "projector"), params, state["batch_stats"], views)
    z = np.stack([z1, z2], axis=1).astype(np.float64)
    want = mmcr_reference(z, hp.lambda_)
    np.testing.assert_allclose(float(value), want, rtol=1e-5)
    # The check pairs views by image: pairing view 1 of i with view 2 of i+1 differs.
    misaligned = np.stack([z1, np.roll(z2, 1, axis=0)], axis=1).astype(np.float64)
    assert abs(mmcr_reference(misaligned, hp.lambda_) - want) > 1e-2
    assert set(new_state) == {"batch_stats"} and np.isfinite(float(metrics["pos_cosine"]))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads["backbone"]))


def test_negative_lambda_is_refused():
    with pytest.raises(ValueError, match="lambda_=-1.0 must be >= 0"):
        get_method(tiny_pretrain_config(**{**MMCR, "method.lambda_": -1.0}))
