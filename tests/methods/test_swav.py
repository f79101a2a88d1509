"""SwAV. One jitted probe (loss, gradients, and the global crops' projections recomputed from
the method's parts) serves every unit test: on 2 CPU cores compiling the ResNet loss once per
test would dominate the run."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.augment.from_config import multicrop_from_config
from ssl_jax.augment.multicrop import make_multicrop_fn
from ssl_jax.data import make_digits_source
from ssl_jax.methods import get_method
from ssl_jax.methods.networks import embed_crops, mlp_head
from ssl_jax.models import make_backbone
from ssl_jax.programs import pretrain
from tests.losses.test_clustering import sinkhorn_reference, swav_loss_reference
from tests.programs.tiny import tiny_pretrain_config

N = 16
SWAV = {
    "method.name": "swav",
    "method.num_prototypes": 10,
    "method.temperature": 0.1,
    "method.queue_length": 32,
    "method.queue_start_step": 1,
    "method.freeze_prototypes_steps": 2,
    "augment.recipe": "swav",
    "augment.crop_scale": (),
    "augment.global_crop_scale": (0.5, 1.0),
    "augment.local_crop_size": 4,
    "augment.num_local_crops": 2,
}
# tests/methods/test_devices.py runs these 1 and 8 devices.
DEVICE_CONFIGS = {"swav": {**SWAV, "method.queue_start_step": 2}}


def swav_config(**overrides):
    return tiny_pretrain_config(**{**SWAV, **overrides})


@pytest.fixture(scope="module")
def setup():
    config = swav_config()
    method = get_method(config)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(N))
    batch = {"images": jnp.asarray(images)}
    backbone = make_backbone(config.model)
    parts = {"backbone": backbone, "projector": mlp_head(backbone.feature_dim, 16, 8)}
    views = make_multicrop_fn(*multicrop_from_config(config.augment))

    @jax.jit  # a jit of its own: traced in a small frame, merged with the loss's by XLA
    def forward(params, stats, crops):
        return embed_crops(parts, "projector", params, stats, crops)[0]

    @jax.jit
    def probe(params, state, key, step):
        """Loss, new state, metrics, grads, and the normalised projections (4, N, 8) of the
        crops (the two global ones first) recomputed from the parts."""
        (loss, (new_state, metrics)), grads = jax.value_and_grad(method.loss, has_aux=True)(
            params, state, batch, key, step, None
        )
        globals_, locals_ = views(batch["images"], key)
        z = forward(params, state["batch_stats"], globals_ + locals_)
        z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
        return loss, new_state, metrics, grads, z.reshape(-1, N, z.shape[-1])

    params, state = jax.jit(method.init)(jax.random.key(0))
    return method, probe, params, state


@pytest.mark.slow  # an optimizer step to compile (about 18 s)
def test_prototypes_are_stored_unit_length_and_projected_back(setup):
    method, probe, params, state = setup
    w = np.asarray(params["prototypes"])
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1.0, rtol=1e-5)
    loss, _, _, grads, _ = probe(params, state, jax.random.key(1), 5)
    assert np.abs(np.asarray(grads["prototypes"])).max() > 0
    # The scores are plain products with the stored prototypes (the authors' forward pass):
    # scaled prototypes change the loss, and project_params restores unit columns.
    scaled = {**params, "prototypes": 3.0 * params["prototypes"]}
    assert abs(float(probe(scaled, state, jax.random.key(1), 5)[0]) - float(loss)) > 1e-3
    projected = method.project_params(scaled)
    np.testing.assert_allclose(projected["prototypes"], w, rtol=1e-5, atol=1e-7)
    assert projected["projector"] is params["projector"]


def test_prototypes_are_frozen_for_the_first_steps(setup):
    _, probe, params, state = setup
    for step, frozen in ((0, True), (1, True), (2, False)):
        _, _, _, grads, _ = probe(params, state, jax.random.key(1), step)
        assert bool(jnp.all(grads["prototypes"] == 0)) == frozen, step
        assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads["projector"]))


def test_queue_is_a_fifo_of_the_global_crop_projections(setup):
    method, probe, params, state = setup
    assert state["queue"].shape == (2, 32, 8)
    pushed, in_use = {}, {}
    for step in range(4):
        key = jax.random.key(10 + step)
        loss, state, metrics, _, z = probe(params, state, key, step)
        pushed[step] = z[:2]
        in_use[step] = float(metrics["queue_in_use"])
        state = method.update_state(params, state, step)
        if step == 0:  # before queue_start_step: nothing pushed
            np.testing.assert_array_equal(state["queue"], 0.0)
        if step == 3:  # the queue was full: codes from queue + batch, not the batch alone
            alone = {**state, "queue_count": jnp.zeros((), jnp.int32)}
            loss_alone = probe(params, alone, key, 3)[0]
    assert in_use == {0: 0.0, 1: 0.0, 2: 0.0, 3: 1.0}
    assert int(state["queue_ptr"]) == 16
    assert int(state["queue_count"]) == 32
    queue = np.asarray(state["queue"])
    np.testing.assert_allclose(queue[:, :N], pushed[3], atol=1e-5)  # wrapped around
    np.testing.assert_allclose(queue[:, N:], pushed[2], atol=1e-5)
    assert abs(float(loss) - float(loss_alone)) > 1e-4


def test_a_queue_length_not_a_multiple_of_the_batch_is_an_error(setup):
    with pytest.raises(ValueError, match=r"SwAV: method.queue_length=40 .* data.batch_size=16"):
        get_method(swav_config(**{"method.queue_length": 40}))
    method = get_method(swav_config(**{"method.queue_length": 48}))
    _, state = jax.eval_shape(method.init, jax.random.key(0))
    assert state["queue"].shape == (2, 48, 8)
    _, state = jax.eval_shape(
        get_method(swav_config(**{"method.queue_length": 0})).init, jax.random.key(0)
    )
    assert "queue" not in state


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(setup):
    method, probe, params, state = setup
    tx = optax.adam(1e-2)
    opt = tx.init(params)
    apply = jax.jit(lambda g, opt, params: tx.update(g, opt, params))
    losses = []
    for i in range(6):
        loss, state, _, grads, _ = probe(params, state, jax.random.key(2), i)
        updates, opt = apply(grads, opt, params)
        params = optax.apply_updates(params, updates)
        state = method.update_state(params, state, i)
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.1, losses


def test_prediction_entropy_matches_numpy_and_diagnose_warns_at_ln_k(setup):
    method, probe, params, state = setup
    _, _, metrics, _, z = probe(params, state, jax.random.key(1), 5)
    w = np.asarray(params["prototypes"], np.float64)
    logits = np.asarray(z, np.float64) @ (w / np.linalg.norm(w, axis=0)) / 0.1
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    expected = -np.mean(np.sum(p * np.log(p), axis=-1))
    np.testing.assert_allclose(metrics["prediction_entropy"], expected, rtol=1e-4)
    assert 0 < expected < np.log(10)
    assert method.diagnose({"prediction_entropy": 0.98 * np.log(10)}) is None
    assert method.diagnose({"loss": 1.0}) is None
    message = method.diagnose({"prediction_entropy": np.log(10) - 1e-4})
    assert "SwAV may have collapsed" in message and "K=10" in message
    assert "sinkhorn_epsilon" in message


def test_export_is_the_online_backbone(setup):
    method, _, params, state = setup
    assert method.export(params, state)["params"] is params["backbone"]
    with pytest.raises(ValueError, match="'online'"):
        get_method(swav_config(**{"export.network": "target"}))


@pytest.mark.slow  # about 40 s on 2 CPU cores, most of it tracing and compiling
def test_one_pretrain_step_runs(tmp_path):
    results = pretrain.run(swav_config(**{"total_steps": 1}), str(tmp_path))
    assert results["final_step"] == 1 and np.isfinite(results["loss"])
    assert results["queue_in_use"] == 0.0


def test_loss_is_the_swapped_prediction_by_hand(setup):
    """SwAV eq. 1-3 in NumPy from the crops' projections: Sinkhorn codes (epsilon 0.05, 3
    iterations) of each global crop, predicted by every other crop at temperature 0.1."""
    _, probe, params, state = setup
    loss, _, _, _, z = probe(params, state, jax.random.key(1), 5)  # queue not full
    scores = np.asarray(z, np.float64) @ np.asarray(params["prototypes"], np.float64)
    codes = np.stack([sinkhorn_reference(scores[a], 0.05, 3) for a in range(2)])
    np.testing.assert_allclose(float(loss), swav_loss_reference(scores, codes, 0.1), rtol=1e-4)
    assert abs(swav_loss_reference(scores, codes, 1.0) - float(loss)) > 0.1
