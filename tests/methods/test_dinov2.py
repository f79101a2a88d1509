"""DINOv2 on fixed, deterministic crops (a stand-in views function): one jitted loss per
centering mode serves the unit tests; the real multi-crop views run in the device test."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.methods import get_method
from ssl_jax.methods.dinov2 import make_dinov2
from ssl_jax.methods.networks import dino_head
from ssl_jax.models import make_backbone
from ssl_jax.pretext import block_masks
from tests.losses.test_koleo import np_koleo, np_sinkhorn_teacher
from tests.methods.test_ibot import fixed_views
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
    "model.layer_scale": 0.5,
    "model.num_registers": 1,
}
DINOV2 = {
    "method.name": "dinov2",
    "method.out_dim": 32,
    "method.patch_out_dim": 24,
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
DEVICE_CONFIGS = {"dinov2": DINOV2}
HEAD = {"proj_hidden_dim": 16, "bottleneck_dim": 8, "out_dim": 32, "patch_out_dim": 24}


def backbone(**overrides):
    return make_backbone(tiny_pretrain_config(**{**TINY_VIT, **overrides}).model)


def build(**kwargs):
    return make_dinov2(backbone(), fixed_views, total_steps=TOTAL, **{**HEAD, **kwargs})


@pytest.fixture(scope="module")
def batch():
    images = np.random.default_rng(0).integers(0, 256, (N, 8, 8, 3), dtype=np.uint8)
    return {"images": jnp.asarray(images)}


@partial(jax.jit, static_argnames="shared")
def reference_outputs(params, state, batch, key, shared=False):
    bb = backbone()
    kwargs = {"hidden_features": 16, "bottleneck_features": 8, "norm_last_layer": False}
    head, ibot_head = dino_head(16, 32, **kwargs), dino_head(16, 24, **kwargs)
    _, mask_key, _ = jax.random.split(key, 3)
    masks = block_masks(mask_key, 2 * N, (4, 4))
    globals_, locals_ = fixed_views(batch["images"], None)

    def run(p, token_mask):
        out, _ = bb.apply(
            p["backbone"],
            {},
            jnp.concatenate(globals_),
            train=False,
            return_all=True,
            token_mask=token_mask,
        )
        local, _ = bb.apply(p["backbone"], {}, jnp.concatenate(locals_), train=False)
        features = jnp.concatenate([out["pooled"], local])
        cls, _ = head.apply(p["head"], {}, features, train=False)
        patches = out["tokens"][:, 1:].reshape(-1, 16)
        patch, _ = ibot_head.apply(p["ibot_head"], {}, patches, train=False)
        return features, cls, patch

    s_feat, s_cls, s_patch = run(params, masks)
    _, t_cls, t_patch = run(state["target"], None)
    return s_feat, s_cls, s_patch, t_cls[: 2 * N], t_patch, masks


def np_dinov2_terms(s_feat, s_cls, s_patch, t_cls, t_patch, masks, temp, centers=None, swap=True):
    """The authors' ``forward_backward``: teacher targets (Sinkhorn-Knopp, or centred softmax),
    local-crop and swapped global-crop DINO terms over the 2 + 2 n_local pairs, the masked
    patch loss, KoLeo per global crop."""
    s_cls = np.asarray(s_cls, np.float64).reshape(4, N, -1)
    lsm = lambda x: x / 0.1 - np.log(np.exp(x / 0.1).sum(-1, keepdims=True))  # noqa: E731
    masks = np.asarray(masks).astype(bool).reshape(-1)
    if centers is None:
        q_cls = np_sinkhorn_teacher(t_cls, temp).reshape(2, N, -1)
        q_patch = np.zeros_like(t_patch)
        q_patch[masks] = np_sinkhorn_teacher(t_patch[masks], temp)
    else:
        soft = lambda x, c: np.exp((x - c) / temp) / np.exp((x - c) / temp).sum(-1, keepdims=True)  # noqa: E731
        q_cls = soft(t_cls, centers[0]).reshape(2, N, -1)
        q_patch = soft(t_patch, centers[1])
    terms = 2 + 2 * 2
    local = sum(-np.mean(np.sum(q * lsm(s), -1)) for s in s_cls[2:] for q in q_cls) / terms
    swapped = np.concatenate([q_cls[1], q_cls[0]] if swap else [q_cls[0], q_cls[1]])
    global_ = -np.mean(np.sum(swapped * lsm(s_cls[:2].reshape(2 * N, -1)), -1)) * 2 / terms
    weights = np.repeat(1 / np.maximum(masks.reshape(2 * N, 16).sum(1), 1), 16)
    ce = -np.sum(q_patch * lsm(np.asarray(s_patch, np.float64)), -1)
    ibot = np.sum((ce * weights)[masks]) / (2 * N)
    feats = np.asarray(s_feat, np.float64)[: 2 * N].reshape(2, N, -1)
    koleo = np_koleo(feats[0]) + np_koleo(feats[1])
    return local + global_, ibot, koleo


@pytest.mark.slow  # compiles the loss and the reference (~10-25 s each on 2 loaded cores)
@pytest.mark.parametrize("centering", ["sinkhorn_knopp", "centering"])
def test_loss_matches_the_authors_forward_backward(batch, centering):
    method = build(
        centering=centering, teacher_temp=0.06, koleo_weight=0.3, warmup_teacher_temp_steps=4
    )
    params, state = jax.jit(method.init)(jax.random.key(0))
    state = {**state, "target": jax.tree.map(lambda x: x * 1.1, state["target"])}
    rng = np.random.default_rng(1)
    centers = rng.normal(size=32) * 0.1, rng.normal(size=24) * 0.1
    state = {**state, "center": jnp.asarray(centers[0]), "patch_center": jnp.asarray(centers[1])}
    key, step = jax.random.key(3), 2
    value, (new_state, metrics) = jax.jit(method.loss)(params, state, batch, key, step, None)
    outs = [np.asarray(x, np.float64) for x in reference_outputs(params, state, batch, key)]
    temp = 0.04 + (0.06 - 0.04) * step / 3
    dino, ibot, koleo = np_dinov2_terms(
        *outs, temp, centers=None if centering == "sinkhorn_knopp" else centers
    )
    np.testing.assert_allclose(metrics["dino_loss"], dino, rtol=5e-5)
    np.testing.assert_allclose(metrics["ibot_loss"], ibot, rtol=5e-5)
    np.testing.assert_allclose(metrics["koleo_loss"], koleo, rtol=5e-5)
    np.testing.assert_allclose(value, dino + ibot + 0.3 * koleo, rtol=5e-5)
    masks = outs[-1].astype(bool).reshape(-1)
    t_cls, t_patch = outs[3], outs[4]
    if centering == "centering":
        np.testing.assert_allclose(
            new_state["center"], 0.9 * centers[0] + 0.1 * t_cls.mean(0), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            new_state["patch_center"],
            0.9 * centers[1] + 0.1 * t_patch[masks].mean(0),
            rtol=1e-5,
            atol=1e-6,
        )
    else:  # Sinkhorn-Knopp keeps no center.
        np.testing.assert_array_equal(new_state["center"], state["center"])
    # The reference can fail: each student global crop against its own teacher crop differs.
    wrong = np_dinov2_terms(
        *outs, temp, centers=None if centering == "sinkhorn_knopp" else centers, swap=False
    )
    assert not np.isclose(wrong[0], dino, rtol=2e-4)


def test_heads_registers_and_config_errors():
    method = build()
    params, state = jax.eval_shape(method.init, jax.random.key(0))
    assert set(params) == set(state["target"]) == {"backbone", "head", "ibot_head"}
    assert params["backbone"]["reg_token"].shape == (1, 1, 16)
    assert params["backbone"]["blocks"][0]["ls1"]["gamma"].shape == (16,)
    shared = build(separate_head=False, patch_out_dim=32)
    params, _ = jax.eval_shape(shared.init, jax.random.key(0))
    assert set(params) == {"backbone", "head"}
    with pytest.raises(ValueError, match="method.patch_out_dim=32 or method.separate_head=True"):
        build(separate_head=False)
    with pytest.raises(ValueError, match="centering='softmax' is unknown"):
        build(centering="softmax")
    with pytest.raises(ValueError, match="model.mask_token=True"):
        make_dinov2(backbone(**{"model.mask_token": False}), fixed_views, total_steps=TOTAL)
    with pytest.raises(ValueError, match="needs a ViT backbone"):
        get_method(tiny_pretrain_config(**{**DINOV2, "model.backbone": "resnet18"}), total_steps=3)


@pytest.mark.slow  # compiles the gradient of the loss (~20 s)
def test_teacher_gets_exactly_zero_gradient(batch):
    method = build()
    params, state = jax.jit(method.init)(jax.random.key(0))

    @jax.jit
    def grads(params, target):
        def f(params, target):
            s = {**state, "target": target}
            return method.loss(params, s, batch, jax.random.key(4), 5, None)[0]

        return jax.grad(f, (0, 1))(params, target)

    student, teacher = grads(params, state["target"])
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(teacher))
    for name in ("head", "ibot_head"):
        assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(student[name])), name
    assert np.any(np.asarray(student["backbone"]["reg_token"][...]) != 0)
