"""SimMIM: the L1 loss on the masked patches by hand, the mask token used and trained, the export
without it. Eager unit tests on a one-block ViT of 16 px digits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.augment.pipeline import IMAGENET_MEAN, IMAGENET_STD
from ssl_jax.data import make_digits_source
from ssl_jax.methods import get_method
from ssl_jax.methods.registry import make_views
from ssl_jax.models import module_def, vit_tiny
from ssl_jax.pretext import simmim_mask
from tests.programs.tiny import tiny_pretrain_config

VIT = dict(backbone="vit_tiny", patch_size=4, img_size=16, embed_dim=16, depth=1, num_heads=2)
SIMMIM = {
    "data.image_size": 16,
    "augment.crop_size": 16,
    "augment.recipe": "crop_flip",
    **{f"model.{k}": v for k, v in VIT.items()},
    "method.mask_patch_size": 8,
}
# tests/methods/test_devices.py runs these 1 and 8 devices.
DEVICE_CONFIGS = {"simmim": SIMMIM}


@pytest.fixture(scope="module")
def setup():
    config = tiny_pretrain_config(**{"method.name": "simmim", **SIMMIM})
    method = get_method(config)
    images, _ = make_digits_source("train", image_size=16).get(np.arange(8))
    params, state = method.init(jax.random.key(0))
    return config, method, {"images": jnp.asarray(images)}, params, state


def test_loss_is_the_l1_error_on_the_masked_patches_by_hand(setup):
    config, method, batch, params, state = setup
    key = jax.random.key(1)
    (value, (_, metrics)), grads = jax.value_and_grad(method.loss, has_aux=True)(
        params, state, batch, key, 0, None
    )
    view_key, mask_key = jax.random.split(key)
    views = make_views(config.augment, "simmim")
    x = (np.asarray(views(batch["images"], view_key)) - IMAGENET_MEAN) / IMAGENET_STD
    mask = np.asarray(simmim_mask(mask_key, 8, 16, mask_patch_size=8, model_patch_size=4))
    assert mask.sum() == 8 * 3 * 4  # ceil(0.6 * 4) = 3 of the 4 mask patches, 4 patches each
    np.testing.assert_allclose(float(metrics["masked_fraction"]), 0.75)
    # The encoder: the same ViT built with the library's own mask token (vit.py), fed the
    # method's parameters; the head: a NumPy matmul.
    vit = module_def(
        lambda rngs: vit_tiny(
            rngs=rngs, mask_token=True, **{k: v for k, v in VIT.items() if k != "backbone"}
        )
    )
    encoded, _ = vit.apply(
        params["backbone"],
        state["batch_stats"]["backbone"],
        jnp.asarray(x, jnp.float32),
        train=True,
        return_all=True,
        token_mask=jnp.asarray(mask),
    )
    tokens = np.asarray(encoded["tokens"][:, 1:], np.float64)
    head = params["decoder"]
    pred = tokens @ np.asarray(head["kernel"][...]) + np.asarray(head["bias"][...])
    patches = x.reshape(8, 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(8, 16, 48)
    per_patch = np.abs(pred - patches).mean(axis=-1)
    want = per_patch[mask].mean()
    np.testing.assert_allclose(float(value), want, rtol=1e-5)
    assert abs(per_patch.mean() - want) > 1e-3  # the visible patches are not in the loss
    # The mask token is what the masked positions see, and it is trained.
    assert float(jnp.abs(grads["backbone"]["mask_token"][...]).sum()) > 0
    moved = jax.tree.map(lambda v: v, params)
    moved["backbone"]["mask_token"] = nnx_param_like(params, 1.0)
    assert abs(float(method.loss(moved, state, batch, key, 0, None)[0]) - want) > 1e-3


def nnx_param_like(params, value):
    token = params["backbone"]["mask_token"]
    return token.replace(jnp.full_like(token[...], value))


def test_export_is_the_plain_backbone(setup):
    config, method, _, params, state = setup
    export = method.export(params, state)
    assert "mask_token" in params["backbone"] and "mask_token" not in export["params"]
    plain, _ = method.backbone.init(jax.random.key(0))
    assert jax.tree.structure(plain) == jax.tree.structure(export["params"])
    assert method.update_state(params, state, 0) is state


def test_needs_a_vit_and_mask_patches_that_tile_the_image():
    with pytest.raises(ValueError, match="SimMIM needs a ViT backbone"):
        get_method(tiny_pretrain_config(**{"method.name": "simmim", "augment.recipe": "crop_flip"}))
    with pytest.raises(ValueError, match="must divide the input size 16"):
        get_method(
            tiny_pretrain_config(
                **{"method.name": "simmim", **SIMMIM, "method.mask_patch_size": 12}
            )
        )
