"""MSN / PMSN: the loss rebuilt from the parts and the authors' NumPy transcription, the
masked anchor, no gradient to the target network, the linear EMA, config errors. A one-block
ViT over 8 px digits (2 px patches), 2 global crops and 2 local crops of 4 px."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.augment.from_config import multicrop_from_config
from ssl_jax.augment.multicrop import make_multicrop_fn
from ssl_jax.data import make_digits_source
from ssl_jax.losses import power_law_prior
from ssl_jax.methods import get_method
from ssl_jax.methods.msn import random_patch_drop
from ssl_jax.methods.networks import apply_chain, mlp_head
from tests.losses.test_msn import msn_reference
from tests.programs.tiny import tiny_pretrain_config

TOTAL = 10
VIT = dict(backbone="vit_tiny", patch_size=2, img_size=8, embed_dim=16, depth=1, num_heads=2)
MSN = {
    "method.name": "msn",
    "augment.recipe": "dino",
    "augment.crop_scale": (),
    "augment.global_crop_scale": (0.5, 1.0),
    "augment.local_crop_size": 4,
    "augment.num_local_crops": 2,
    **{f"model.{k}": v for k, v in VIT.items()},
    "method.num_prototypes": 12,
    "method.patch_drop": 0.25,
}
# tests/methods/test_devices.py runs these on 1 and 8 devices (PMSN's prior: both terms),
# without the projector's BatchNorm (the authors' use_bn=False): with it the ViT's final
# LayerNorm bias has an analytically zero gradient whose float noise AdamW turns into
# +-lr steps that differ between 1 and 8 devices (LeJEPA's and NNCLR's finding).
DEVICE_CONFIGS = {"msn": {**MSN, "method.prior_exponent": 0.25, "method.proj_use_bn": False}}


@pytest.fixture(scope="module")
def setup():
    config = tiny_pretrain_config(**MSN)
    method = get_method(config, total_steps=TOTAL)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    params, state = jax.jit(method.init)(jax.random.key(0))
    return config, method, {"images": jnp.asarray(images)}, params, state


def test_patch_drop_keeps_one_random_subset_per_batch():
    keep = np.asarray(random_patch_drop(jax.random.key(0), 4, 16, 0.15))
    assert keep.shape == (4, 13) and np.all(keep == keep[0])  # floor(16 * 0.85), shared
    assert len(set(keep[0])) == 13
    counts = np.zeros(16)
    for i in range(2000):
        counts[np.asarray(random_patch_drop(jax.random.key(i), 1, 16, 0.25))[0]] += 1
    np.testing.assert_allclose(counts / 2000, 12 / 16, atol=0.04)  # every patch equally kept


def test_update_state_follows_the_linear_ema_and_config_errors(setup):
    _, method, _, params, state = setup
    assert params["prototypes"].shape == (12, 8)
    assert float(jnp.abs(params["prototypes"]).max()) <= 8**-0.5
    moved = jax.tree.map(lambda p: p + 1.0, params)
    new = method.update_state(moved, state, 5)
    m = 0.996 + 0.004 * 5 / TOTAL
    for t_new, t_old, online in zip(
        jax.tree.leaves(new["target"]), jax.tree.leaves(state["target"]),
        jax.tree.leaves({k: moved[k] for k in ("backbone", "projector")}), strict=True,
    ):  # fmt: skip
        np.testing.assert_allclose(t_new, m * t_old + (1 - m) * online, rtol=1e-5, atol=1e-6)
    assert "prototypes" not in new["target"]
    with pytest.raises(ValueError, match="patch_drop=1.0"):
        get_method(tiny_pretrain_config(**{**MSN, "method.patch_drop": 1.0}), total_steps=TOTAL)
    resnet = {k: v for k, v in MSN.items() if not k.startswith("model.")}
    with pytest.raises(ValueError, match="needs a ViT backbone"):
        get_method(tiny_pretrain_config(**resnet), total_steps=TOTAL)


@pytest.mark.slow  # eager multi-crop views and a gradient through them (about 40 s)
def test_loss_is_the_authors_on_the_masked_anchor_and_the_target_gets_no_gradient(setup):
    config, method, batch, params, state = setup
    for exponent in (0.0, 0.25):
        pmsn = get_method(
            tiny_pretrain_config(**{**MSN, "method.prior_exponent": exponent}), total_steps=TOTAL
        )
        key = jax.random.key(3)
        value, (_, terms) = pmsn.loss(params, state, batch, key, 0, None)
        view_key, drop_key = jax.random.split(key)
        (target_view, anchor_view), locals_ = make_multicrop_fn(
            *multicrop_from_config(config.augment)
        )(batch["images"], view_key)
        parts = {"backbone": method.backbone, "projector": mlp_head(16, 16, 8, num_layers=3)}
        h, _ = apply_chain(parts, ("backbone", "projector"), state["target"],
                           state["target_batch_stats"], target_view)  # fmt: skip
        keep = random_patch_drop(drop_key, 16, 16, 0.25)
        stats = state["batch_stats"]
        f0, bs = method.backbone.apply(params["backbone"], stats["backbone"], anchor_view,
                                       train=True, keep_indices=keep)  # fmt: skip
        f1, _ = method.backbone.apply(params["backbone"], bs, jnp.concatenate(locals_),
                                      train=True)  # fmt: skip
        z, _ = parts["projector"].apply(params["projector"], stats["projector"],
                                        jnp.concatenate([f0, f1]), train=True)  # fmt: skip
        prior = None if exponent == 0 else np.asarray(power_law_prior(12, exponent))
        want = msn_reference(z, h, params["prototypes"], prior=prior)[0]
        np.testing.assert_allclose(float(value), want, rtol=1e-4)
        # The check can fail: the anchor unmasked gives another loss.
        f_full, _ = method.backbone.apply(params["backbone"], stats["backbone"], anchor_view,
                                          train=True)  # fmt: skip
        z_full, _ = parts["projector"].apply(params["projector"], stats["projector"],
                                             jnp.concatenate([f_full, f1]), train=True)  # fmt: skip
        assert abs(msn_reference(z_full, h, params["prototypes"], prior=prior)[0] - want) > 1e-4

    def loss(params, target):
        return method.loss(params, {**state, "target": target}, batch, jax.random.key(1), 0,
                           None)[0]  # fmt: skip

    grads, target_grads = jax.grad(loss, argnums=(0, 1))(params, state["target"])
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(target_grads))
    for part in ("backbone", "projector", "prototypes"):
        assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads[part])), part
