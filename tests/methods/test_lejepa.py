"""LeJEPA: the loss rebuilt from the parts and computed in NumPy, gradients everywhere (no
stop-gradient), no state but batch statistics. Eager, on a one-block ViT over 8 px digits
(2 px patches) with 2 global and 2 local crops of 4 px."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.augment.from_config import multicrop_from_config
from ssl_jax.augment.multicrop import make_multicrop_fn
from ssl_jax.data import make_digits_source
from ssl_jax.methods import get_method
from ssl_jax.methods.networks import embed_crops, mlp_head
from tests.losses.test_jepa import lejepa_reference
from tests.programs.tiny import tiny_pretrain_config

VIT = dict(backbone="vit_tiny", patch_size=2, img_size=8, embed_dim=16, depth=1, num_heads=2)
LEJEPA = {
    "method.name": "lejepa",
    "augment.recipe": "dino",
    "augment.crop_scale": (),
    "augment.global_crop_scale": (0.5, 1.0),
    "augment.local_crop_size": 4,
    "augment.num_local_crops": 2,
    "augment.blur_prob": 0.5,
    "augment.solarize_prob": 0.2,
    **{f"model.{k}": v for k, v in VIT.items()},
    "method.num_slices": 32,
    "method.lamb": 0.2,
}
# tests/methods/test_devices.py runs these on 1 and 8 devices, with a one-Linear projector:
# with BatchNorm after the projector's first Linear, the bias of the ViT's final LayerNorm has
# an analytically zero gradient (BatchNorm removes the shift), so AdamW turns float noise,
# which differs between 1 and 8 devices, into +-lr steps that move the BatchNorm running
# means (3e-3 apart after 3 steps while the losses agree to 2e-5; NNCLR's finding).
DEVICE_CONFIGS = {"lejepa": {**LEJEPA, "method.proj_layers": 1}}


@pytest.fixture(scope="module")
def setup():
    config = tiny_pretrain_config(**LEJEPA)
    method = get_method(config, total_steps=4)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    params, state = jax.jit(method.init)(jax.random.key(0))
    return config, method, {"images": jnp.asarray(images)}, params, state


@pytest.mark.slow  # eager multi-crop views: about 30 s on 2 loaded cores
def test_loss_is_the_papers_objective_on_the_projections(setup):
    config, method, batch, params, state = setup
    key = jax.random.key(5)
    value, (new_state, metrics) = method.loss(params, state, batch, key, 0, None)
    view_key, slice_key = jax.random.split(key)
    globals_, locals_ = make_multicrop_fn(*multicrop_from_config(config.augment))(
        batch["images"], view_key
    )
    parts = {"backbone": method.backbone, "projector": mlp_head(16, 16, 8, num_layers=3)}
    z, _ = embed_crops(parts, "projector", params, state["batch_stats"], globals_ + locals_)
    z = np.asarray(z, np.float64).reshape(4, 16, 8)
    directions = np.asarray(jax.random.normal(slice_key, (8, 32)), np.float64)
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    want, pred, reg = lejepa_reference(z[:2], z, directions, 0.2)
    np.testing.assert_allclose(float(value), want, rtol=1e-4)
    np.testing.assert_allclose(metrics["prediction"], pred, rtol=1e-4)
    np.testing.assert_allclose(metrics["sigreg"], reg, rtol=1e-4)
    # The check can fail: centres over every view instead of the global ones differ.
    wrong, _, _ = lejepa_reference(z, z, directions, 0.2)
    assert abs(wrong - want) > 1e-3
    # The projector's BatchNorm statistics move; nothing else is kept.
    assert set(new_state) == {"batch_stats"}
    moved = jax.tree.leaves(new_state["batch_stats"]["projector"])
    assert any(not np.allclose(a, b) for a, b in zip(moved, jax.tree.leaves(
        state["batch_stats"]["projector"]), strict=True))  # fmt: skip
    assert method.update_state(params, state, 0) is state


@pytest.mark.slow  # a gradient through the multi-crop views (about 13 s)
def test_every_part_gets_a_gradient_and_config_errors(setup):
    _, method, batch, params, state = setup
    grads = jax.grad(lambda p: method.loss(p, state, batch, jax.random.key(1), 0, None)[0])(params)
    for part in ("backbone", "projector"):
        assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads[part])), part
    # DEVICE_CONFIGS' reason: BatchNorm after the projector's first Linear cancels the ViT's
    # final LayerNorm bias, whose gradient is float noise only.
    noise = float(jnp.abs(grads["backbone"]["norm"]["bias"][...]).max())
    assert noise < 1e-3 * float(jnp.abs(grads["backbone"]["norm"]["scale"][...]).max())
    assert method.export(params, state)["params"] is params["backbone"]
    with pytest.raises(ValueError, match=r"method.lamb=1.5 must lie in \[0, 1\]"):
        get_method(tiny_pretrain_config(**{**LEJEPA, "method.lamb": 1.5}))
    with pytest.raises(ValueError, match="num_slices=0"):
        get_method(tiny_pretrain_config(**{**LEJEPA, "method.num_slices": 0}))
