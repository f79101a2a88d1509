"""DINO. One jitted probe (loss, gradients w.r.t. student and teacher, and the student and
teacher logits recomputed from the method's parts) serves every unit test: on 2 CPU cores
compiling the ResNet loss once per test would dominate the run."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.augment.from_config import eval_settings, multicrop_from_config
from ssl_jax.augment.multicrop import make_multicrop_fn
from ssl_jax.data import make_digits_source
from ssl_jax.export import load_export
from ssl_jax.losses import dino_loss, dino_teacher_temperature
from ssl_jax.methods import get_method
from ssl_jax.methods.momentum import cosine_momentum
from ssl_jax.methods.networks import dino_head, embed_crops
from ssl_jax.models import make_backbone
from ssl_jax.programs import pretrain
from tests.programs.tiny import tiny_pretrain_config

TOTAL = 10
DINO = {
    "method.name": "dino",
    "method.out_dim": 32,
    "method.base_momentum": 0.9,
    "method.center_momentum": 0.8,
    "method.warmup_teacher_temp": 0.04,
    "method.teacher_temp": 0.07,
    "method.warmup_teacher_temp_steps": 4,
    "method.freeze_last_layer_steps": 2,
    "augment.recipe": "dino",
    "augment.crop_scale": (),
    "augment.global_crop_scale": (0.5, 1.0),
    "augment.local_crop_size": 4,
    "augment.num_local_crops": 2,
}
# tests/methods/test_devices.py runs these 1 and 8 devices.
DEVICE_CONFIGS = {"dino": DINO}


def dino_config(**overrides):
    return tiny_pretrain_config(**{**DINO, **overrides})


@pytest.fixture(scope="module")
def setup():
    config = dino_config()
    method = get_method(config, total_steps=TOTAL)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    batch = {"images": jnp.asarray(images)}
    backbone = make_backbone(config.model)
    parts = {
        "backbone": backbone,
        "head": dino_head(
            backbone.feature_dim, 32, hidden_features=16, bottleneck_features=8, num_layers=3
        ),
    }
    views = make_multicrop_fn(*multicrop_from_config(config.augment))

    @jax.jit  # a jit of its own: traced in a small frame, merged with the loss's by XLA
    def forward(params, stats, crops):
        return embed_crops(parts, "head", params, stats, crops)[0]

    @jax.jit
    def probe(params, state, key, step):
        """Loss, new state, metrics, grads (student, teacher), logits (student, teacher)."""

        def f(params, target):
            return method.loss(params, {**state, "target": target}, batch, key, step, None)

        (loss, (new_state, metrics)), grads = jax.value_and_grad(f, (0, 1), has_aux=True)(
            params, state["target"]
        )
        globals_, locals_ = views(batch["images"], key)
        student = forward(params, state["batch_stats"], globals_ + locals_)
        teacher = forward(state["target"], state["target_batch_stats"], globals_)
        logits = (student.reshape(4, 16, -1), teacher.reshape(2, 16, -1))
        return loss, new_state, metrics, grads, logits

    params, state = jax.jit(method.init)(jax.random.key(0))
    return method, probe, params, state


@pytest.mark.slow  # a gradient of every part to compile (about 17 s)
def test_teacher_gets_exactly_zero_gradient(setup):
    _, probe, params, state = setup
    _, _, _, (student_grads, teacher_grads), _ = probe(params, state, jax.random.key(1), 3)
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(teacher_grads))
    assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(student_grads["backbone"]))


def test_loss_uses_the_scheduled_temperature_and_moves_the_center(setup):
    _, probe, params, state = setup
    center = jax.random.normal(jax.random.key(5), (32,))
    for step, temp in ((0, 0.04), (2, 0.06), (7, 0.07)):
        s = {**state, "center": center}
        loss, new_state, metrics, _, (student, teacher) = probe(params, s, jax.random.key(1), step)
        schedule = dino_teacher_temperature(
            step, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_steps=4, total_steps=TOTAL
        )
        np.testing.assert_allclose(schedule, temp, rtol=1e-5)
        np.testing.assert_allclose(metrics["teacher_temp"], temp, rtol=1e-5)
        expected = dino_loss(student, teacher, center, student_temp=0.1, teacher_temp=temp)
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
        mean = np.mean(np.asarray(teacher), axis=(0, 1))
        np.testing.assert_allclose(
            new_state["center"], 0.8 * center + 0.2 * mean, rtol=1e-5, atol=1e-6
        )


def test_collapse_metrics_match_numpy_and_diagnose_warns_at_ln_k(setup):
    method, probe, params, state = setup
    center = np.asarray(jax.random.normal(jax.random.key(5), (32,)))
    s = {**state, "center": jnp.asarray(center)}
    _, _, metrics, _, (_, teacher) = probe(params, s, jax.random.key(1), 7)
    logits = (np.asarray(teacher, np.float64) - center) / 0.07
    q = np.exp(logits - logits.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    np.testing.assert_allclose(
        metrics["teacher_entropy"], -np.mean(np.sum(q * np.log(q), axis=-1)), rtol=1e-4
    )
    mean = q.reshape(-1, 32).mean(0)
    np.testing.assert_allclose(
        metrics["teacher_batch_entropy"], -np.sum(mean * np.log(mean)), rtol=1e-4
    )
    assert method.diagnose({"teacher_entropy": 0.98 * np.log(32)}) is None
    message = method.diagnose({"teacher_entropy": np.log(32)})
    assert "DINO may have collapsed" in message and "K=32" in message
    assert "head_use_bn" in message


def test_update_state_follows_the_ema_formula_and_keeps_no_step_counter(setup):
    method, _, params, state = setup
    moved = jax.tree.map(lambda p: p + 1.0, params)
    new = method.update_state(moved, state, 3)
    assert "step" not in new  # the loss receives the global step
    tau = 1 - (1 - 0.9) * (np.cos(np.pi * 3 / TOTAL) + 1) / 2
    np.testing.assert_allclose(cosine_momentum(3, base_momentum=0.9, total_steps=TOTAL), tau)
    for name in ("backbone", "head"):
        for t_new, t_old, online in zip(
            jax.tree.leaves(new["target"][name]),
            jax.tree.leaves(state["target"][name]),
            jax.tree.leaves(moved[name]),
            strict=True,
        ):
            np.testing.assert_allclose(
                t_new, tau * t_old + (1 - tau) * online, rtol=1e-5, atol=1e-7
            )


def test_last_layer_is_frozen_for_the_first_steps(setup):
    _, probe, params, state = setup
    for step, frozen in ((1, True), (2, False)):
        _, _, _, (grads, _), _ = probe(params, state, jax.random.key(1), step)
        last = jax.tree.leaves(grads["head"]["last_layer"])
        assert all(bool(jnp.all(g == 0)) == frozen for g in last), step
        assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads["head"]["linears"]))


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(setup):
    method, probe, params, state = setup
    tx = optax.adam(1e-2)
    opt = tx.init(params)
    apply = jax.jit(lambda g, opt, params: tx.update(g, opt, params))
    update_state = jax.jit(method.update_state)
    losses = []
    for i in range(6):
        loss, state, _, (grads, _), _ = probe(params, state, jax.random.key(2), i)
        updates, opt = apply(grads, opt, params)
        params = optax.apply_updates(params, updates)
        state = update_state(params, state, i)
        losses.append(float(loss))
    assert "step" not in state
    assert losses[-1] < losses[0] - 0.1, losses


def test_export_and_config_errors(setup):
    method, _, params, state = setup
    assert method.export(params, state)["params"] is params["backbone"]
    teacher = get_method(dino_config(**{"export.network": "target"}), total_steps=TOTAL)
    out = teacher.export(params, state)
    assert out["params"] is state["target"]["backbone"]
    assert out["batch_stats"] is state["target_batch_stats"]["backbone"]
    with pytest.raises(ValueError, match="total_steps"):
        get_method(dino_config())
    with pytest.raises(ValueError, match="'online' or 'target'"):
        get_method(dino_config(**{"export.network": "teacher"}), total_steps=TOTAL)
    with pytest.raises(ValueError, match="global_crop_scale"):
        get_method(dino_config(**{"augment.crop_scale": (0.5, 1.0)}), total_steps=TOTAL)


def test_multicrop_from_config_reads_the_augment_section():
    overrides = {"augment.blur_prob": 0.0, "augment.crop_ratio": (1.0, 1.0)}
    recipe = multicrop_from_config(dino_config(**overrides).augment)
    assert [s.crop_size for s in recipe.global_specs] == [8, 8]
    assert recipe.local_spec.crop_size == 4 and recipe.num_local == 2
    assert recipe.global_specs[0].crop_scale == (0.5, 1.0)
    assert recipe.local_spec.crop_scale == (0.05, 0.4)
    assert all(s.blur_prob == 0.0 for s in (*recipe.global_specs, recipe.local_spec))
    assert all(s.crop_ratio == (1.0, 1.0) for s in (*recipe.global_specs, recipe.local_spec))


def test_eval_settings_understand_multicrop_configs():
    settings = eval_settings(dino_config().augment)
    assert settings["size"] == 8


@pytest.mark.slow  # about 45 s on 2 CPU cores, most of it tracing and compiling
def test_one_pretrain_step_runs(tmp_path):
    config = dino_config(**{"total_steps": 1, "export.network": "target"})
    results = pretrain.run(config, str(tmp_path))
    assert results["final_step"] == 1 and np.isfinite(results["loss"])
    np.testing.assert_allclose(results["teacher_temp"], 0.04, rtol=1e-5)
    # The export carries the teacher's prototype head (tests/methods/test_dino_kd.py).
    export = load_export(str(tmp_path))
    assert export.spec["head"]["kind"] == "prototypes" and export.spec["head"]["out_dim"] == 32
    assert export.arrays["head"]["center"].shape == (32,)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    assert export.logits(images).shape == (16, 32)
