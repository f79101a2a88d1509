"""iBOT. The method runs on fixed, deterministic crops (a stand-in views function) so that one
jitted loss serves the unit tests; the real multi-crop views run in the device test."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.methods import get_method
from ssl_jax.methods.ibot import make_ibot
from ssl_jax.methods.momentum import cosine_momentum
from ssl_jax.methods.networks import dino_head
from ssl_jax.models import make_backbone
from ssl_jax.pretext import block_masks
from tests.programs.tiny import tiny_pretrain_config

TOTAL = 10
N = 8
TINY_VIT = {
    "model.backbone": "vit_tiny",
    "model.patch_size": 2,
    "model.img_size": 8,
    "model.embed_dim": 16,
    "model.depth": 1,
    "model.num_heads": 2,
    "model.mask_token": True,
}
IBOT = {
    "method.name": "ibot",
    "method.out_dim": 32,
    "method.patch_out_dim": 32,
    "method.base_momentum": 0.9,
    "method.warmup_teacher_temp_steps": 4,
    "augment.recipe": "dino",
    "augment.crop_scale": (),
    "augment.global_crop_scale": (0.5, 1.0),
    "augment.local_crop_size": 4,
    "augment.num_local_crops": 2,
    **TINY_VIT,
}
# tests/methods/test_devices.py runs these on 1 and 8 devices.
DEVICE_CONFIGS = {"ibot": IBOT}
HEAD = {"proj_hidden_dim": 16, "bottleneck_dim": 8, "out_dim": 32, "patch_out_dim": 32}


def fixed_views(images, key):
    """Two global 8-px crops and two local 4-px crops, the same for every key."""
    del key
    x = images.astype(jnp.float32) / 255.0 - 0.5
    return (x, x[:, :, ::-1]), (x[:, :4, :4], x[:, 4:, 4:])


def backbone(**overrides):
    return make_backbone(tiny_pretrain_config(**{**TINY_VIT, **overrides}).model)


def build(**kwargs):
    return make_ibot(backbone(), fixed_views, total_steps=TOTAL, **{**HEAD, **kwargs})


@pytest.fixture(scope="module")
def setup():
    method = build(
        patch_out_dim=32, warmup_teacher_temp_steps=4, teacher_temp=0.06, center_momentum=0.8
    )
    images = np.random.default_rng(0).integers(0, 256, (N, 8, 8, 3), dtype=np.uint8)
    batch = {"images": jnp.asarray(images)}
    params, state = jax.jit(method.init)(jax.random.key(0))
    # The target differs from the student, so mixing them up shows.
    state = {**state, "target": jax.tree.map(lambda x: x * 1.1, state["target"])}
    loss = jax.jit(lambda p, s, key, step: method.loss(p, s, batch, key, step, None))
    return method, loss, params, state, batch


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@partial(jax.jit, static_argnames="mask_student")
def reference_outputs(params, state, batch, key, mask_student=True):
    """Student and teacher logits from the parts, outside the method: masked global crops and
    local crops for the student, unmasked global crops for the teacher."""
    bb = backbone()
    head = dino_head(16, 32, hidden_features=16, bottleneck_features=8, num_layers=3)
    _, mask_key, _ = jax.random.split(key, 3)
    masks = block_masks(mask_key, 2 * N, (4, 4))
    globals_, locals_ = fixed_views(batch["images"], None)
    g = jnp.concatenate(globals_)

    def run(p, stats, token_mask):
        tokens, _ = bb.apply(
            p["backbone"], stats["backbone"], g, train=False, return_all=True, token_mask=token_mask
        )
        local, _ = bb.apply(p["backbone"], stats["backbone"], jnp.concatenate(locals_), train=False)
        cls = jnp.concatenate([tokens["pooled"], local])
        logits, _ = head.apply(p["head"], stats["head"], cls, train=False)
        patches = tokens["tokens"][:, 1:].reshape(-1, 16)
        patch_logits, _ = head.apply(p["head"], stats["head"], patches, train=False)
        return logits, patch_logits

    s_cls, s_patch = run(params, state["batch_stats"], masks if mask_student else None)
    t_cls, t_patch = run(state["target"], state["target_batch_stats"], None)
    return (
        s_cls.reshape(4, N, -1),
        s_patch.reshape(2, N, 16, -1),
        t_cls[: 2 * N].reshape(2, N, -1),
        t_patch.reshape(2, N, 16, -1),
        masks.reshape(2, N, 16),
    )


def reference(*args, **kwargs):
    return [np.asarray(x, np.float64) for x in reference_outputs(*args, **kwargs)]


def np_ibot_loss(s_cls, s_patch, t_cls, t_patch, masks, center, center2, temp, temp2):
    """The authors' ``iBOTLoss.forward`` in float64: crop pairs q != v for [CLS], q == v for
    the masked patches (per-image mean over masked patches, then batch mean)."""
    loss1, n1, loss2, n2 = 0.0, 0, 0.0, 0
    for q in range(2):
        tq = np_softmax((t_cls[q] - center) / temp)
        tp = np_softmax((t_patch[q] - center2) / temp2)
        for v in range(4):
            if v == q:
                ce = np.sum(-tp * np.log(np_softmax(s_patch[v] / 0.1)), -1)
                m = masks[v].astype(np.float64)
                loss2 += np.mean(np.sum(ce * m, -1) / np.maximum(m.sum(-1), 1.0))
                n2 += 1
            else:
                loss1 += np.mean(np.sum(-tq * np.log(np_softmax(s_cls[v] / 0.1)), -1))
                n1 += 1
    return loss1 / n1, loss2 / n2


def test_loss_and_centers_match_the_authors_ibot_loss(setup):
    method, loss, params, state, batch = setup
    rng = np.random.default_rng(1)
    center, center2 = rng.normal(size=32) * 0.1, rng.normal(size=32) * 0.1
    state = {**state, "center": jnp.asarray(center), "patch_center": jnp.asarray(center2)}
    key, step = jax.random.key(3), 2
    value, (new_state, metrics) = loss(params, state, key, step)
    s_cls, s_patch, t_cls, t_patch, masks = reference(params, state, batch, key)
    temp = 0.04 + (0.06 - 0.04) * step / 3  # linear warm-up over 4 steps
    temp2 = 0.04 + (0.07 - 0.04) * step / 3
    cls, patch = np_ibot_loss(s_cls, s_patch, t_cls, t_patch, masks, center, center2, temp, temp2)
    assert 0 < masks.mean() < 0.5 and masks.reshape(-1, 16).any(1).mean() < 1
    np.testing.assert_allclose(metrics["cls_loss"], cls, rtol=2e-5)
    np.testing.assert_allclose(metrics["patch_loss"], patch, rtol=2e-5)
    np.testing.assert_allclose(value, cls + patch, rtol=2e-5)
    np.testing.assert_allclose(metrics["mask_ratio"], masks.mean(), rtol=1e-6)
    np.testing.assert_allclose(
        new_state["center"], 0.8 * center + 0.2 * t_cls.mean((0, 1)), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        new_state["patch_center"], 0.9 * center2 + 0.1 * t_patch.mean((0, 1, 2)), atol=1e-6
    )
    # The reference can fail: the teacher's patches of the other crop, or a student that saw
    # the crops unmasked, give other numbers.
    swapped = np_ibot_loss(
        s_cls, s_patch, t_cls, t_patch[::-1], masks, center, center2, temp, temp2
    )
    assert not np.isclose(swapped[1], patch, rtol=1e-3)
    _, plain, *_ = reference(params, state, batch, key, mask_student=False)
    plain = np_ibot_loss(s_cls, plain, t_cls, t_patch, masks, center, center2, temp, temp2)
    assert not np.isclose(plain[1], patch, rtol=1e-3)


def test_update_state_follows_the_ema_formula(setup):
    method, _, params, state, _ = setup
    moved = jax.tree.map(lambda p: p + 1.0, params)
    new = jax.jit(method.update_state)(moved, state, 3)
    tau = cosine_momentum(3, base_momentum=0.996, total_steps=TOTAL)
    for t_new, t_old, online in zip(
        jax.tree.leaves(new["target"]),
        jax.tree.leaves(state["target"]),
        jax.tree.leaves(moved),
        strict=True,
    ):
        np.testing.assert_allclose(t_new, tau * t_old + (1 - tau) * online, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(new["center"], state["center"])
    np.testing.assert_array_equal(new["patch_center"], state["patch_center"])


def test_separate_heads_and_config_errors():
    method = build(shared_head=False, patch_out_dim=24)
    params, state = jax.eval_shape(method.init, jax.random.key(0))
    assert set(params) == set(state["target"]) == {"backbone", "head", "patch_head"}
    assert state["patch_center"].shape == (24,) and state["center"].shape == (32,)
    with pytest.raises(ValueError, match="method.patch_out_dim=32 or method.shared_head=False"):
        build(patch_out_dim=24)
    with pytest.raises(ValueError, match="model.mask_token=True"):
        make_ibot(backbone(**{"model.mask_token": False}), fixed_views, total_steps=TOTAL)
    with pytest.raises(ValueError, match="needs a ViT backbone"):
        get_method(tiny_pretrain_config(**{**IBOT, "model.backbone": "resnet18"}), total_steps=3)
    with pytest.raises(ValueError, match="half-width <= ratio"):
        build(mask_ratios=(0.1,), mask_ratio_vars=(0.3,))
    with pytest.raises(ValueError, match="total_steps"):
        make_ibot(backbone(), fixed_views, total_steps=None)
    teacher = build(export_network="target")
    params, state = jax.eval_shape(teacher.init, jax.random.key(0))
    assert teacher.export(params, state)["params"] is state["target"]["backbone"]


@pytest.mark.slow  # compiles the gradient of the loss (~15 s)
def test_gradients_stop_at_the_teacher_and_a_few_steps_lower_the_loss(setup):
    method, _, params, state, batch = setup

    @jax.jit
    def probe(params, state, step):
        def f(params, target):
            return method.loss(
                params, {**state, "target": target}, batch, jax.random.key(4), step, None
            )

        return jax.value_and_grad(f, (0, 1), has_aux=True)(params, state["target"])

    (_, _), (grads, teacher_grads) = probe(params, state, 0)
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(teacher_grads))
    assert np.any(np.asarray(grads["backbone"]["mask_token"][...]) != 0)
    assert all(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads["head"]))
    tx = optax.adam(1e-3)
    opt = tx.init(params)
    update_state = jax.jit(method.update_state)
    losses = []
    centers = {"center": state["center"], "patch_center": state["patch_center"]}
    for _ in range(12):  # a fixed objective: past the warm-up, momentum 1, centers kept
        (loss, (state, _)), (grads, _) = probe(params, state, TOTAL)
        state = {**state, **centers}
        updates, opt = tx.update(grads, opt, params)
        params = optax.apply_updates(params, updates)
        state = update_state(params, state, TOTAL)
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.slow  # compiles two students (~10 s)
def test_drop_path_acts_on_the_student_only():
    images = np.random.default_rng(0).integers(0, 256, (N, 8, 8, 3), dtype=np.uint8)

    def losses(rate, key):
        method = make_ibot(
            # depth 2: the first block's rate is 0 (timm's linear rule), the second's 0.5
            backbone(**{"model.drop_path_rate": rate, "model.depth": 2}),
            fixed_views,
            total_steps=TOTAL,
            **HEAD,
        )
        params, state = method.init(jax.random.key(0))
        return method.loss(params, state, {"images": images}, key, 0, None)

    (a, (state_a, _)), (b, (state_b, _)) = (
        losses(0.5, jax.random.key(1)),
        losses(0.0, jax.random.key(1)),
    )
    assert np.isfinite(a) and not np.isclose(a, b)  # same masks, the student's branches dropped
    # The teacher's outputs, hence the new centers, do not depend on the rate.
    np.testing.assert_array_equal(state_a["center"], state_b["center"])
    np.testing.assert_array_equal(state_a["patch_center"], state_b["patch_center"])
