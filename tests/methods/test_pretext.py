"""Rotation, context prediction and jigsaw as methods: the loss is the cross-entropy of the
right network outputs against the transform's labels, training lowers it, the registry feeds
them one raw view and the export's input spec."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ssl_jax.augment.pipeline import IMAGENET_MEAN, IMAGENET_STD
from ssl_jax.config import pretext_preset, pretrain_defaults
from ssl_jax.data import make_digits_source
from ssl_jax.export import make_input_spec
from ssl_jax.losses import rebalanced_cross_entropy
from ssl_jax.methods import get_method, method_config
from ssl_jax.methods.mae import make_mae
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.registry import make_views
from ssl_jax.models import ConvDecoder, MAEDecoder, module_def, vit_tiny
from ssl_jax.pretext import (
    ab_gamut_bins,
    hamming_permutations,
    quantize_ab,
    random_masking,
    rebalance_weights,
    rgb_to_lab,
    soft_encode_ab,
)

FIELDS = {
    "colorization": dict(decoder_width=8),
    "inpainting": dict(decoder_width=8),
    "rotation": dict(head_layers=2, head_hidden_dim=8),
    "context": dict(patch_size=4, gap=1, jitter=1, chroma="drop", head_hidden_dim=8),
    "jigsaw": dict(num_permutations=10, grid=3, tile_size=4, head_hidden_dim=8),
}

# tiny_pretrain_config overrides of each task for the 1- vs 8-device trajectories
# (tests/methods/test_devices.py): 16 px digits, one crop-and-flip view.
_SIXTEEN = {"data.image_size": 16, "augment.crop_size": 16, "augment.recipe": "crop_flip"}
DEVICE_CONFIGS = {
    name: {**_SIXTEEN, **{f"method.{k}": v for k, v in fields.items()}}
    for name, fields in FIELDS.items()
}
DEVICE_CONFIGS["mae"] = {
    **_SIXTEEN,
    **{f"model.{k}": v for k, v in dict(backbone="vit_tiny", patch_size=4, img_size=16,
                                         embed_dim=16, depth=1, num_heads=2).items()},
    **{f"method.{k}": v for k, v in dict(decoder_dim=8, decoder_depth=1, decoder_heads=2).items()},
}  # fmt: skip


def pretext_config(name: str, **fields) -> ml_collections.ConfigDict:
    c = pretext_preset(pretrain_defaults())
    c.data.update(name="digits", image_size=16, batch_size=8)
    c.augment.crop_size = 16
    c.model.width = 4
    c.method = method_config(name, **{**FIELDS[name], **fields})
    c.lock()
    return c


def build(name, **fields):
    config = pretext_config(name, **fields)
    method = get_method(config)
    images, _ = make_digits_source("train", image_size=16).get(np.arange(8))
    params, state = jax.jit(method.init)(jax.random.key(0))
    return method, config, {"images": jnp.asarray(images)}, params, state


def numpy_cross_entropy(logits, labels):
    logits = np.asarray(logits, np.float64)
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    return float(-np.mean(log_p[np.arange(len(labels)), labels]))


@pytest.mark.slow  # the loss and an eager ResNet on 4N images (about 9 s); transforms by default
def test_rotation_loss_is_the_cross_entropy_of_the_four_rotations():
    method, config, batch, params, state = build("rotation")
    key = jax.random.key(1)
    value, (new_state, metrics) = jax.jit(method.loss)(params, state, batch, key, 0, None)

    # The method's view (the first key of its split), rotated by NumPy, image-major.
    view = make_views(config.augment, "rotation")(batch["images"], jax.random.split(key)[0])
    view = np.asarray(view)
    rotated = np.stack([np.rot90(v, k) for v in view for k in range(4)])
    labels = np.tile(np.arange(4), len(view))
    spec = method.input_spec
    x = (rotated - np.asarray(spec["mean"])) / np.asarray(spec["std"])
    features, _ = method.backbone.apply(
        params["backbone"],
        state["batch_stats"]["backbone"],
        jnp.asarray(x, jnp.float32),
        train=True,
    )
    head = mlp_head(method.backbone.feature_dim, 8, 4, num_layers=2)
    logits, _ = head.apply(
        params["classifier"], state["batch_stats"]["classifier"], features, train=True
    )
    np.testing.assert_allclose(float(value), numpy_cross_entropy(logits, labels), rtol=1e-4)
    want_top1 = 100 * np.mean(np.asarray(logits).argmax(1) == labels)
    np.testing.assert_allclose(metrics["pretext_top1"], want_top1, atol=1e-4)
    assert set(new_state) == {"batch_stats"}


@pytest.mark.slow  # three train steps to compile (about 30 s)
@pytest.mark.parametrize("name", sorted(FIELDS))
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(name):
    method, _, batch, params, state = build(name)
    tx = optax.adam(1e-2)
    opt = tx.init(params)
    key = jax.random.key(2)  # the same task draws every step: a fixed problem to fit

    @jax.jit
    def step(params, opt, state):
        (loss, (state, _)), grads = jax.value_and_grad(method.loss, has_aux=True)(
            params, state, batch, key, 0, None
        )
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, state, loss

    losses = []
    for _ in range(16):  # colorization's loss falls ~2% a step: 16% after 8 (measured)
        params, opt, state, loss = step(params, opt, state)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0], losses


@pytest.mark.slow  # a ResNet initialisation to compile (about 7 s)
def test_jigsaw_keeps_its_permutation_set_in_the_method_state():
    method, _, batch, params, state = build("jigsaw", permutation_seed=3)
    want = hamming_permutations(10, num_tiles=9, seed=3)
    np.testing.assert_array_equal(state["permutations"], want)
    assert "permutations" not in params  # carried in the state (and checkpoints), not trained
    out = jax.eval_shape(method.loss, params, state, batch, jax.random.key(0), 0, None)
    new_state = out[1][0]
    assert new_state["permutations"].shape == (10, 9) and set(new_state) == set(state)


def test_pretext_methods_get_one_raw_view_and_the_runs_input_spec():
    config = pretext_config("rotation")
    images, _ = make_digits_source("train", image_size=16).get(np.arange(4))
    view = make_views(config.augment, "rotation")(jnp.asarray(images), jax.random.key(0))
    assert view.shape == (4, 16, 16, 3)
    assert float(view.min()) >= 0.0 and float(view.max()) <= 1.0  # not normalised
    spec = make_input_spec(size=16, mean=IMAGENET_MEAN, std=IMAGENET_STD)  # the recipe's
    assert get_method(config).input_spec == spec


def test_a_two_view_recipe_for_a_pretext_task_is_a_clear_error():
    c = pretrain_defaults()  # augment.recipe simclr: two views
    c.method = method_config("rotation")
    with pytest.raises(ValueError, match="rotation needs a one-view augment recipe"):
        make_views(c.augment, "rotation")


# --- Generative tasks: colorization, inpainting, MAE -----------------------------------------


def test_colorization_is_the_rebalanced_cross_entropy_at_a_quarter_resolution():
    method, config, batch, params, state = build("colorization")
    spec = method.input_spec
    assert spec["color_space"] == "lab_l" and spec["channels"] == 3  # the export feeds it L
    key, step = jax.random.key(1), 3
    value, (new_state, _) = jax.jit(method.loss)(params, state, batch, key, step, None)

    x = make_views(config.augment, "colorization")(batch["images"], key)
    lab = np.asarray(rgb_to_lab(x), np.float64)
    ab = lab[..., 1:].reshape(8, 4, 4, 4, 4, 2).mean(axis=(2, 4))  # 16 px -> 4 x 4 blocks
    bins = ab_gamut_bins(grid=10)
    counts = np.bincount(np.asarray(quantize_ab(ab, bins)).ravel(), minlength=len(bins))
    old = np.asarray(state["ab_prior"])
    prior = old + (counts / counts.sum() - old) / (step + 1)  # the running mean of the prior
    np.testing.assert_allclose(new_state["ab_prior"], prior, rtol=1e-5, atol=1e-7)

    stats = state["batch_stats"]
    lightness = np.repeat((lab[..., :1] / 100 - 0.5) / 0.25, 3, axis=-1)
    features, _ = method.backbone.apply(
        params["backbone"], stats["backbone"], jnp.asarray(lightness, jnp.float32), train=True,
        return_all=True,
    )  # fmt: skip
    decoder = module_def(
        lambda rngs: ConvDecoder(32, len(bins), width=8, num_upsamples=1, rngs=rngs)
    )
    logits, _ = decoder.apply(params["decoder"], stats["decoder"], features["stage4"], train=True)
    want = rebalanced_cross_entropy(
        logits, soft_encode_ab(ab, bins), rebalance_weights(prior, bins, lam=0.5, sigma=5.0)
    )
    np.testing.assert_allclose(float(value), float(want), rtol=2e-4)


def test_inpainting_reconstructs_the_central_block_only():
    method, config, batch, params, state = build("inpainting")
    key = jax.random.key(1)
    value, _ = jax.jit(method.loss)(params, state, batch, key, 0, None)

    view = make_views(config.augment, "inpainting")(batch["images"], jax.random.split(key)[0])
    spec = method.input_spec
    x = (np.asarray(view) - np.asarray(spec["mean"])) / np.asarray(spec["std"])
    hole = np.zeros((16, 16), bool)
    hole[4:12, 4:12] = True  # half of each side, centred
    stats = state["batch_stats"]
    features, _ = method.backbone.apply(
        params["backbone"], stats["backbone"], jnp.asarray(np.where(hole[..., None], 0.0, x)),
        train=True, return_all=True,
    )  # fmt: skip
    decoder = module_def(lambda rngs: ConvDecoder(32, 3, width=8, num_upsamples=3, rngs=rngs))
    pred, _ = decoder.apply(params["decoder"], stats["decoder"], features["stage4"], train=True)
    want = np.mean((np.asarray(pred) - x)[:, hole] ** 2)
    np.testing.assert_allclose(float(value), want, rtol=1e-4)


def tiny_vit(rngs):
    return vit_tiny(rngs=rngs, depth=1, embed_dim=16, num_heads=2, patch_size=4, img_size=16)


def test_mae_is_the_normalised_pixel_error_on_the_removed_patches():
    config = pretext_config("rotation")
    spec = make_input_spec(size=16, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    views = make_views(config.augment, "mae")
    method = make_mae(module_def(tiny_vit), views, input_spec=spec, decoder_dim=8,
                      decoder_depth=1, decoder_heads=2)  # fmt: skip
    images, _ = make_digits_source("train", image_size=16).get(np.arange(4))
    batch = {"images": jnp.asarray(images)}
    params, state = jax.jit(method.init)(jax.random.key(0))
    key = jax.random.key(1)
    value, _ = jax.jit(method.loss)(params, state, batch, key, 0, None)

    view_key, mask_key = jax.random.split(key)
    x = (np.asarray(views(batch["images"], view_key)) - IMAGENET_MEAN) / IMAGENET_STD
    masking = random_masking(mask_key, 4, 16, mask_ratio=0.75)
    assert int(masking.mask.sum()) == 4 * 12
    stats = state["batch_stats"]
    encoded, _ = method.backbone.apply(
        params["backbone"], stats["backbone"], jnp.asarray(x, jnp.float32), train=True,
        return_all=True, keep_indices=masking.keep_indices,
    )  # fmt: skip
    assert encoded["tokens"].shape == (4, 1 + 4, 16)  # the encoder saw the 4 kept patches
    decoder = module_def(
        lambda rngs: MAEDecoder(num_patches=16, encoder_dim=16, decoder_dim=8, depth=1,
                                num_heads=2, patch_dim=48, grid_size=(4, 4), rngs=rngs)
    )  # fmt: skip
    pred, _ = decoder.apply(
        params["decoder"], stats["decoder"], encoded["tokens"], train=True,
        ids_restore=masking.ids_restore,
    )  # fmt: skip
    patches = x.reshape(4, 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(4, 16, 48)
    mean, var = patches.mean(-1, keepdims=True), patches.var(-1, ddof=1, keepdims=True)
    target = (patches - mean) / np.sqrt(var + 1e-6)
    per_patch = np.mean((np.asarray(pred) - target) ** 2, axis=-1)
    want = per_patch[np.asarray(masking.mask)].mean()
    np.testing.assert_allclose(float(value), want, rtol=1e-4)


def test_mae_needs_a_vit_and_a_valid_mask_ratio():
    config = pretext_config("rotation")
    spec = make_input_spec(size=16, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    views = make_views(config.augment, "mae")
    with pytest.raises(ValueError, match="MAE needs a ViT backbone"):
        make_mae(get_method(config).backbone, views, input_spec=spec)
    with pytest.raises(ValueError, match="mask_ratio"):
        make_mae(module_def(tiny_vit), views, input_spec=spec, mask_ratio=1.0)
