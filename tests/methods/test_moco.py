"""MoCo v2 and v3. Unit tests run eagerly: on 2 CPU cores that is far cheaper than compiling
each ResNet loss once per test; the one end-to-end run exercises the jitted, sharded step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.data import make_digits_source
from ssl_jax.losses import moco_v3_ctr
from ssl_jax.methods import get_method
from ssl_jax.methods.momentum import make_momentum_schedule
from ssl_jax.methods.networks import apply_chain, mlp_head
from ssl_jax.methods.registry import make_views
from tests.losses.test_contrastive import info_nce_reference
from tests.programs.tiny import tiny_pretrain_config

V2 = {"method.name": "mocov2", "method.queue_length": 64, "method.momentum": 0.9}
V3 = {
    "method.name": "mocov3",
    "method.pred_hidden_dim": 16,
    "method.momentum": 0.9,
    "method.momentum_schedule": "cosine",
    "augment.recipe": "byol",
}
TOTAL = 10
# tests/methods/test_devices.py runs these 1 and 8 devices.
DEVICE_CONFIGS = {"mocov2": V2, "mocov3": V3}


def moco_config(base, **overrides):
    return tiny_pretrain_config(**{**base, **overrides})


@pytest.fixture(scope="module")
def batch():
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    return {"images": jnp.asarray(images)}


@pytest.fixture(scope="module", params=["mocov2", "mocov3"])
def setup(request):
    config = moco_config(V2 if request.param == "mocov2" else V3)
    method = get_method(config, total_steps=TOTAL)
    params, state = method.init(jax.random.key(0))
    return config, method, params, state


def assert_trees_close(a, b, **kw):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **kw)


def test_momentum_schedules_follow_their_formulas():
    const = make_momentum_schedule(
        "constant", momentum=0.9, final_momentum=1.0, total_steps=None, method="m"
    )
    np.testing.assert_allclose(const(0), 0.9, rtol=1e-6)
    np.testing.assert_allclose(const(7), 0.9, rtol=1e-6)
    cos = make_momentum_schedule(
        "cosine", momentum=0.99, final_momentum=1.0, total_steps=100, method="m"
    )
    for step in (0, 30, 50, 100, 150):
        expected = 1 - 0.01 * (np.cos(np.pi * min(step / 100, 1)) + 1) / 2
        np.testing.assert_allclose(cos(step), expected, rtol=1e-6)
    solo_hp = dict(momentum=0.99, final_momentum=0.999, method="m")
    solo = make_momentum_schedule("cosine", total_steps=100, **solo_hp)
    for step in (0, 30, 100):
        expected = 0.999 - 0.009 * (np.cos(np.pi * step / 100) + 1) / 2
        np.testing.assert_allclose(solo(step), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="total_steps"):
        make_momentum_schedule("cosine", total_steps=None, **solo_hp)
    linear = make_momentum_schedule("linear", total_steps=100, **solo_hp)  # I-JEPA's, MSN's
    for step in (0, 30, 100, 150):
        np.testing.assert_allclose(linear(step), 0.99 + 0.009 * min(step / 100, 1), rtol=1e-6)
    with pytest.raises(ValueError, match="'constant', 'cosine', 'linear'"):
        make_momentum_schedule("step", total_steps=10, **solo_hp)
    # The config adapter passes the method section's fields through.
    with pytest.raises(ValueError, match="'constant', 'cosine', 'linear'"):
        get_method(moco_config(V2, **{"method.momentum_schedule": "step"}), total_steps=10)


def test_target_starts_as_a_copy_and_follows_the_momentum_formula(setup):
    config, method, params, state = setup
    assert set(state["target"]) == {"backbone", "projector"}
    assert_trees_close(state["target"], {k: params[k] for k in state["target"]}, rtol=0)
    moved = jax.tree.map(lambda p: p + 1.0, params)
    step = 3
    new = method.update_state(moved, state, step)
    if config.method.name == "mocov2":
        m = 0.9
    else:
        m = 1 - (1 - 0.9) * (np.cos(np.pi * step / TOTAL) + 1) / 2
    for name in ("backbone", "projector"):
        expected = jax.tree.map(
            lambda t, o: m * t + (1 - m) * o, state["target"][name], moved[name]
        )
        assert_trees_close(new["target"][name], expected, rtol=1e-5, atol=1e-7)
    assert "predictor" not in new["target"]


@pytest.mark.slow  # a gradient of the whole loss to compile per variant (about 7 s each)
def test_target_gets_exactly_zero_gradient(setup, batch):
    _, method, params, state = setup

    def loss(params, target):
        state_with = {**state, "target": target}
        return method.loss(params, state_with, batch, jax.random.key(1), 0, None)[0]

    online_grads, target_grads = jax.grad(loss, argnums=(0, 1))(params, state["target"])
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(target_grads))
    assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(online_grads["projector"]))


def mocov2_keys(config, method, state, batch, key, view):
    """The key encoder's normalised projections of one view, computed outside the method."""
    hp = config.method
    parts = {
        "backbone": method.backbone,
        "projector": mlp_head(
            method.backbone.feature_dim, hp.proj_hidden_dim, hp.proj_dim, use_bn=False
        ),
    }
    v = make_views(config.augment, config.method.name)(batch["images"], key)[view]
    k, _ = apply_chain(
        parts,
        ("backbone", "projector"),
        state["target"],
        state["target_batch_stats"],
        v,
    )
    return k / jnp.linalg.norm(k, axis=-1, keepdims=True)


@pytest.mark.parametrize("symmetric", [False, True])
def test_loss_enqueues_this_steps_keys_of_the_whole_batch(batch, symmetric):
    config = moco_config(V2, **{"method.symmetric": symmetric})
    method = get_method(config, total_steps=TOTAL)
    params, state = method.init(jax.random.key(0))
    queues = 2 if symmetric else 1
    assert state["queue"].shape == (queues, 64, 8) and int(state["queue_ptr"]) == 0
    np.testing.assert_allclose(jnp.linalg.norm(state["queue"], axis=-1), 1.0, rtol=1e-5)
    key = jax.random.key(1)
    value, (new, _) = method.loss(params, state, batch, key, 0, None)
    assert int(new["queue_ptr"]) == 16
    # MoCo eq. 1 by hand (NumPy): each query against its key (the other view, momentum
    # encoder) and the queue as it was BEFORE this step's keys were pushed.
    hp = config.method
    parts = {
        "backbone": method.backbone,
        "projector": mlp_head(
            method.backbone.feature_dim, hp.proj_hidden_dim, hp.proj_dim, use_bn=False
        ),
    }
    views = make_views(config.augment, config.method.name)(batch["images"], key)
    stats, terms, own_keys_as_negatives = state["batch_stats"], [], []
    for i, view in enumerate((0, 1)[:queues]):
        q, stats = apply_chain(parts, ("backbone", "projector"), params, stats, views[view])
        q = np.asarray(q)
        k = np.asarray(mocov2_keys(config, method, state, batch, key, 1 - view))
        terms.append(info_nce_reference(q, k, np.asarray(state["queue"][i]), hp.temperature))
        after_push = np.asarray(new["queue"][i])
        own_keys_as_negatives.append(info_nce_reference(q, k, after_push, hp.temperature))
    np.testing.assert_allclose(float(value), np.mean(terms), rtol=1e-5)
    assert abs(np.mean(own_keys_as_negatives) - np.mean(terms)) > 1e-2  # tells them apart
    # Query i's positives are keys of view 2 (then view 1): queue i holds those keys.
    for i, view in enumerate((1, 0)[:queues]):
        expected = mocov2_keys(config, method, state, batch, key, view)
        np.testing.assert_allclose(new["queue"][i, :16], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(new["queue"][:, 16:], state["queue"][:, 16:])
    _, (newer, _) = method.loss(params, new, batch, jax.random.key(2), 0, None)
    assert int(newer["queue_ptr"]) == 32
    np.testing.assert_array_equal(newer["queue"][:, :16], new["queue"][:, :16])
    assert not np.allclose(newer["queue"][:, 16:32], state["queue"][:, 16:32])


def test_queue_length_must_be_a_multiple_of_the_global_batch():
    with pytest.raises(ValueError, match=r"queue_length=40 .* data.batch_size=16.*Use e.g. 48"):
        get_method(moco_config(V2, **{"method.queue_length": 40}), total_steps=TOTAL)


def ctr_reference(q, k, t):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    logits = q @ k.T / t
    logits = logits - logits.max(axis=1, keepdims=True)
    log_prob = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -np.mean(np.diag(log_prob)) * 2 * t


def test_moco_v3_ctr_matches_numpy_and_is_symmetric_in_the_method(batch):
    rng = np.random.default_rng(0)
    q1, q2, k1, k2 = (rng.normal(size=(12, 5)).astype(np.float64) for _ in range(4))
    for t in (0.2, 1.0):
        ctr = jax.jit(lambda q, k, t=t: moco_v3_ctr(q, k, temperature=t))
        np.testing.assert_allclose(ctr(q1, k2), ctr_reference(q1, k2, t), rtol=1e-5)
        perm = rng.permutation(12)
        np.testing.assert_allclose(ctr(3 * q1[perm], k2[perm]), ctr(q1, k2), rtol=1e-5)
    with pytest.raises(ValueError, match="same"):
        moco_v3_ctr(q1, k2[:5], temperature=0.2)

    # The method's loss is ctr(q1, k2) + ctr(q2, k1) over the whole batch.
    config = moco_config(V3)
    method = get_method(config, total_steps=TOTAL)
    params, state = method.init(jax.random.key(0))
    key = jax.random.key(1)
    value, _ = method.loss(params, state, batch, key, 0, None)
    hp = config.method
    head = dict(last_bn=True, last_bn_affine=False)
    parts = {
        "backbone": method.backbone,
        "projector": mlp_head(
            method.backbone.feature_dim, hp.proj_hidden_dim, hp.proj_dim, num_layers=3, **head
        ),
        "predictor": mlp_head(hp.proj_dim, hp.pred_hidden_dim, hp.proj_dim, **head),
    }
    v1, v2 = make_views(config.augment, config.method.name)(batch["images"], key)
    online = ("backbone", "projector", "predictor")
    stats, tstats = state["batch_stats"], state["target_batch_stats"]
    q1 = apply_chain(parts, online, params, stats, v1)[0]
    q2 = apply_chain(parts, online, params, stats, v2)[0]
    k1 = apply_chain(parts, online[:2], state["target"], tstats, v1)[0]
    k2 = apply_chain(parts, online[:2], state["target"], tstats, v2)[0]
    expected = ctr_reference(np.asarray(q1), np.asarray(k2), hp.temperature) + ctr_reference(
        np.asarray(q2), np.asarray(k1), hp.temperature
    )
    np.testing.assert_allclose(value, expected, rtol=1e-4)


@pytest.mark.slow  # a train step per variant to compile (about 5 s each)
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(setup, batch):
    config, method, params, state = setup
    tx = optax.adam(1e-2)
    opt = tx.init(params)
    key = jax.random.key(2)
    grad_fn = jax.value_and_grad(method.loss, has_aux=True)
    losses = []
    for i in range(5):
        if config.method.name == "mocov2":
            # Same negatives every step: the queue would otherwise fill with this batch's keys.
            state = {**state, "queue_ptr": jnp.zeros((), jnp.int32)}
            fixed = state["queue"]
        (loss, (state, _)), g = grad_fn(params, state, batch, key, i, None)
        if config.method.name == "mocov2":
            state = {**state, "queue": fixed}
        updates, opt = tx.update(g, opt, params)
        params = optax.apply_updates(params, updates)
        state = method.update_state(params, state, i)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.3, losses


def test_export_online_or_target(setup):
    config, method, params, state = setup
    assert method.export(params, state)["params"] is params["backbone"]
    base = V2 if config.method.name == "mocov2" else V3
    target = get_method(moco_config(base, **{"export.network": "target"}), total_steps=TOTAL)
    exported = target.export(params, state)
    assert exported["params"] is state["target"]["backbone"]
    assert exported["batch_stats"] is state["target_batch_stats"]["backbone"]
    with pytest.raises(ValueError, match="'online'"):
        get_method(moco_config(base, **{"export.network": "teacher"}), total_steps=TOTAL)


@pytest.mark.slow  # a real sharded pretraining run, about 25 s on 2 CPU cores
def test_pretrain_mocov2_end_to_end_keeps_a_global_queue(tmp_path):
    """8 devices, global batch 16: each step pushes 16 keys, whatever the per-device batch."""
    from ssl_jax.checkpoint import Checkpointer
    from ssl_jax.optim import make_optimizer, make_schedule
    from ssl_jax.parallel import make_mesh
    from ssl_jax.programs import pretrain
    from ssl_jax.train_step import make_init_fn

    config = moco_config(V2, **{"method.queue_length": 128, "evals.knn.every_steps": 0})
    assert jax.device_count() == 8
    results = pretrain.run(config, str(tmp_path))
    assert results["final_step"] == 4 and np.isfinite(results["loss"])

    method = get_method(config, total_steps=4)
    schedule = make_schedule(config, steps_per_epoch=1, total_steps=4)
    init_fn = make_init_fn(method, make_optimizer(config.optim, schedule), make_mesh())
    ckpt = Checkpointer(str(tmp_path), read_only=True)
    state, _ = ckpt.restore(4, jax.eval_shape(init_fn, config.seed))
    ckpt.close()
    queue = np.asarray(state.method_state["queue"][0])
    assert int(state.method_state["queue_ptr"]) == 4 * 16
    assert np.all(np.isfinite(queue))
    np.testing.assert_allclose(np.linalg.norm(queue, axis=-1), 1.0, rtol=1e-5)
    # The train step's init key, as make_init_fn splits it: rows past 64 are still the initial
    # random keys; the 64 filled rows are new.
    init_key, _ = jax.random.split(jax.random.key(config.seed))
    _, initial = method.init(init_key)
    np.testing.assert_allclose(queue[64:], initial["queue"][0, 64:], rtol=1e-5, atol=1e-6)
    assert not np.any(np.all(np.isclose(queue[:64], initial["queue"][0, :64]), axis=-1))
