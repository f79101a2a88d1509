"""data2vec 2.0: the teacher's targets and the multi-mask loss by hand, no gradient into the
teacher, the EMA update by its formula. Eager unit tests on a two-block ViT of 16 px digits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.augment.pipeline import IMAGENET_MEAN, IMAGENET_STD
from ssl_jax.data import make_digits_source
from ssl_jax.methods import get_method
from ssl_jax.methods.registry import make_views
from ssl_jax.models import Data2VecDecoder, module_def
from ssl_jax.pretext import random_masking
from tests.programs.tiny import tiny_pretrain_config

VIT = dict(backbone="vit_tiny", patch_size=4, img_size=16, embed_dim=16, depth=2, num_heads=2)
D2V = {
    "data.image_size": 16,
    "augment.crop_size": 16,
    "augment.recipe": "crop_flip",
    **{f"model.{k}": v for k, v in VIT.items()},
    **{f"method.{k}": v for k, v in dict(num_masks=3, top_k=2, decoder_dim=8,
                                         decoder_depth=1, decoder_groups=2).items()},
}  # fmt: skip
# tests/methods/test_devices.py runs these 1 and 8 devices.
DEVICE_CONFIGS = {"data2vec": {**D2V, "method.num_masks": 2}}


def instance_norm_reference(a):
    """PyTorch's ``instance_norm`` of ``(N, D, T)``, on ``(N, T, D)`` in float64."""
    a = a.astype(np.float64)
    return (a - a.mean(axis=1, keepdims=True)) / np.sqrt(a.var(axis=1, keepdims=True) + 1e-5)


@pytest.fixture(scope="module")
def setup():
    config = tiny_pretrain_config(**{"method.name": "data2vec", **D2V})
    method = get_method(config, total_steps=4)
    images, _ = make_digits_source("train", image_size=16).get(np.arange(4))
    params, state = method.init(jax.random.key(0))
    # A teacher different from the student, as after some steps.
    state = {
        **state,
        "target": jax.tree.map(lambda t: t * 0.9 + 0.01, state["target"]),
    }
    return config, method, {"images": jnp.asarray(images)}, params, state


def test_loss_is_the_multi_mask_regression_of_the_teachers_averaged_top_blocks(setup):
    config, method, batch, params, state = setup
    key = jax.random.key(1)

    def loss(params, target):
        return method.loss(params, {**state, "target": target}, batch, key, 0, None)

    (value, _), (param_grads, target_grads) = jax.value_and_grad(
        loss, argnums=(0, 1), has_aux=True
    )(params, state["target"])
    view_key, mask_key = jax.random.split(key)
    views = make_views(config.augment, "data2vec")
    x = (np.asarray(views(batch["images"], view_key)) - IMAGENET_MEAN) / IMAGENET_STD
    x = jnp.asarray(x, jnp.float32)
    # Teacher: both blocks (top_k=2 of depth 2) of the target ViT, patch tokens, each
    # instance-normalised over the tokens, then averaged.
    stats = state["batch_stats"]
    out, _ = method.backbone.apply(
        state["target"]["backbone"], stats["backbone"], x, train=False, return_all=True
    )
    blocks = [np.asarray(out[f"block{i}"][:, 1:]) for i in (1, 2)]
    targets = np.mean([instance_norm_reference(b) for b in blocks], axis=0)  # (4, 16, 16)
    # Student: 3 masked copies per image, each its own mask; the method's decoder.
    masking = random_masking(mask_key, 12, 16, mask_ratio=0.8)
    copies = jnp.repeat(x, 3, axis=0)
    encoded, _ = method.backbone.apply(
        params["backbone"], stats["backbone"], copies, train=True, return_all=True,
        keep_indices=masking.keep_indices,
    )  # fmt: skip
    assert encoded["tokens"].shape == (12, 1 + 3, 16)  # 3 of 16 patches visible per copy
    decoder_out = _decoder(method, params, stats, encoded["tokens"], masking.ids_restore)
    pred = np.asarray(decoder_out, np.float64)
    mask = np.asarray(masking.mask, bool)
    shared = np.repeat(targets, 3, axis=0)  # image i's targets for its copies 3i .. 3i+2
    per_patch = np.sum((pred - shared) ** 2, axis=-1) / np.sqrt(16)
    want = per_patch[mask].mean()
    np.testing.assert_allclose(float(value), want, rtol=1e-4)
    # The pairing of copies with their image matters: tiling instead of repeating differs.
    tiled = np.tile(targets, (3, 1, 1))
    assert abs(np.sum((pred - tiled) ** 2, -1)[mask].mean() / 4 - want) > 1e-3
    # The teacher gets exactly no gradient; the student and the decoder do.
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(target_grads))
    for part in ("backbone", "decoder"):
        assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(param_grads[part]))


def _decoder(method, params, stats, tokens, ids_restore):
    """The decoder part rebuilt from the test's sizes, on the method's decoder params."""
    decoder = module_def(
        lambda rngs: Data2VecDecoder(
            num_patches=16, encoder_dim=16, decoder_dim=8, out_dim=16, depth=1,
            grid_size=(4, 4), groups=2, rngs=rngs,
        )
    )  # fmt: skip
    out, _ = decoder.apply(
        params["decoder"], stats["decoder"], tokens, train=True, ids_restore=ids_restore
    )
    return out


def test_teacher_follows_the_ema_formula(setup):
    _, method, _, params, state = setup
    new = method.update_state(params, state, 2)
    m = 0.9998 + (0.99999 - 0.9998) * (1 - np.cos(np.pi * 2 / 4)) / 2  # cosine rise, step 2/4
    leaf = lambda tree: np.asarray(jax.tree.leaves(tree["backbone"])[0])
    want = m * leaf(state["target"]) + (1 - m) * leaf(params)
    np.testing.assert_allclose(leaf(new["target"]), want, rtol=1e-6, atol=1e-7)
    assert new["batch_stats"] is state["batch_stats"]


@pytest.mark.parametrize(
    "field, value, message",
    [("top_k", 3, r"top_k=3 must be in \[1, 2\]"), ("num_masks", 0, "num_masks=0 must be >= 1")],
)
def test_bad_hyperparameters_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        get_method(
            tiny_pretrain_config(**{"method.name": "data2vec", **D2V, f"method.{field}": value}),
            total_steps=4,
        )
