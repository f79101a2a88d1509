"""I-JEPA: the loss rebuilt from the parts and computed in NumPy, no gradient to the target
encoder, the linear EMA, and the config errors. Unit tests run eagerly on an 8x8 patch grid
(8 px digits, 1 px patches, a one-block ViT of width 16)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.data import make_digits_source
from ssl_jax.export import convert_input
from ssl_jax.methods import get_method
from ssl_jax.methods.registry import make_views
from ssl_jax.models import module_def
from ssl_jax.models.predictor import JEPAPredictor
from ssl_jax.pretext import multiblock_masks
from tests.losses.test_jepa import paper_l2_reference, smooth_l1_reference
from tests.programs.tiny import tiny_pretrain_config

TOTAL = 10
VIT = dict(backbone="vit_tiny", patch_size=1, img_size=8, embed_dim=16, depth=1, num_heads=2,
           pool="mean")  # fmt: skip
IJEPA = {
    "method.name": "ijepa",
    "augment.recipe": "crop_flip",
    "augment.flip_prob": 0.0,
    "augment.crop_scale": (0.3, 1.0),
    **{f"model.{k}": v for k, v in VIT.items()},
    "method.predictor_dim": 8,
    "method.predictor_depth": 1,
    "method.min_keep": 4,
}
# tests/methods/test_devices.py runs these on 1 and 8 devices.
DEVICE_CONFIGS = {"ijepa": IJEPA}


@pytest.fixture(scope="module")
def setup():
    config = tiny_pretrain_config(**IJEPA)
    method = get_method(config, total_steps=TOTAL)
    images, _ = make_digits_source("train", image_size=8).get(np.arange(16))
    params, state = jax.jit(method.init)(jax.random.key(0))
    return config, method, {"images": jnp.asarray(images)}, params, state


def rebuilt(config, method, params, state, batch, key):
    """Predictions and the target encoder's raw patch tokens at the targets, from the parts."""
    spec = method.input_spec
    view_key, mask_key, _ = jax.random.split(key, 3)
    x = convert_input(make_views(config.augment, "ijepa")(batch["images"], view_key), spec)
    masks = multiblock_masks(mask_key, 16, (8, 8), min_keep=4)
    backbone = method.backbone
    target_tokens = backbone.apply(
        state["target"]["backbone"], {}, x, train=False, return_all=True
    )[0]["tokens"][:, 1:]
    context = backbone.apply(
        params["backbone"], {}, x, train=True, return_all=True, keep_indices=masks.context
    )[0]["tokens"][:, 1:]
    predictor = module_def(
        lambda rngs: JEPAPredictor(
            grid_size=(8, 8), encoder_dim=16, predictor_dim=8, depth=1, num_heads=2, rngs=rngs
        )  # fmt: skip
    )
    pred = predictor.apply(
        params["predictor"], {}, context, train=True,
        context_indices=masks.context, target_indices=masks.targets,
    )[0]  # fmt: skip
    return pred, target_tokens, masks


def numpy_targets(tokens, masks):
    """The authors' targets: ``F.layer_norm`` over features (eps 1e-5), then the target
    patches, ``(N, M, K, D)``."""
    mean = tokens.mean(-1, keepdims=True)
    h = (tokens - mean) / np.sqrt(tokens.var(-1, keepdims=True) + 1e-5)
    idx = np.asarray(masks.targets)
    return np.stack([h[i][idx[i]] for i in range(len(h))])


def test_loss_is_smooth_l1_to_the_layer_normed_target_patches(setup):
    config, method, batch, params, state = setup
    # A target encoder other than the online one, so the two are told apart.
    state = {**state, "target": jax.tree.map(lambda p: p * 0.9, state["target"])}
    key = jax.random.key(3)
    value, (_, metrics) = jax.jit(method.loss)(params, state, batch, key, 0, None)
    pred, tokens, masks = jax.jit(lambda p, s, b, k: rebuilt(config, method, p, s, b, k))(
        params, state, batch, key
    )
    pred, tokens = np.asarray(pred, np.float64), np.asarray(tokens, np.float64)
    target = numpy_targets(tokens, masks)
    assert pred.shape == target.shape == (16, 4, 9, 16)
    np.testing.assert_allclose(float(value), smooth_l1_reference(pred, target), rtol=1e-5)
    # The check can fail: without the extra layer norm, or with the targets of other
    # patches (the context's), the loss differs.
    raw = np.stack([tokens[i][np.asarray(masks.targets)[i]] for i in range(16)])
    assert abs(smooth_l1_reference(pred, raw) - float(value)) > 1e-2
    shifted = numpy_targets(tokens, masks._replace(targets=(masks.targets + 1) % 64))
    assert abs(smooth_l1_reference(pred, shifted) - float(value)) > 1e-3
    assert float(metrics["context_patches_dropped"]) >= 0.0


@pytest.mark.slow  # a second eager loss and rebuild (about 15 s on 2 loaded cores)
def test_loss_l2_is_the_papers_eq_1(setup):
    config, method, batch, params, state = setup
    key = jax.random.key(3)
    l2 = get_method(tiny_pretrain_config(**IJEPA, **{"method.loss": "l2"}), total_steps=TOTAL)
    value = l2.loss(params, state, batch, key, 0, None)[0]
    pred, tokens, masks = rebuilt(config, method, params, state, batch, key)
    pred, tokens = np.asarray(pred, np.float64), np.asarray(tokens, np.float64)
    np.testing.assert_allclose(
        float(value), paper_l2_reference(pred, numpy_targets(tokens, masks)), rtol=1e-5
    )


def test_the_target_encoder_gets_exactly_zero_gradient(setup):
    _, method, batch, params, state = setup

    def loss(params, target):
        return method.loss(params, {**state, "target": target}, batch, jax.random.key(1), 0,
                           None)[0]  # fmt: skip

    grads, target_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, state["target"])
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(target_grads))
    for part in ("backbone", "predictor"):
        assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads[part])), part


def test_update_state_moves_the_target_with_linear_momentum(setup):
    _, method, _, params, state = setup
    moved = jax.tree.map(lambda p: p + 1.0, params)
    new = method.update_state(moved, state, 4)
    m = 0.996 + (1.0 - 0.996) * 4 / TOTAL
    for t_new, t_old, online in zip(
        jax.tree.leaves(new["target"]["backbone"]),
        jax.tree.leaves(state["target"]["backbone"]),
        jax.tree.leaves(moved["backbone"]),
        strict=True,
    ):
        np.testing.assert_allclose(t_new, m * t_old + (1 - m) * online, rtol=1e-5, atol=1e-6)
    assert set(new["target"]) == {"backbone"}  # the predictor has no target copy
    assert new["batch_stats"] is state["batch_stats"]


def test_export_and_config_errors(setup):
    _, method, _, params, state = setup
    assert method.export(params, state)["params"] is params["backbone"]
    target = get_method(tiny_pretrain_config(**IJEPA, **{"export.network": "target"}),
                        total_steps=TOTAL)  # fmt: skip
    assert target.export(params, state)["params"] is state["target"]["backbone"]
    assert target.network == "target" and method.input_spec["size"] == 8
    resnet = {k: v for k, v in IJEPA.items() if not k.startswith("model.")}
    with pytest.raises(ValueError, match="needs a ViT backbone"):
        get_method(tiny_pretrain_config(**resnet), total_steps=TOTAL)
    with pytest.raises(ValueError, match="set method.min_keep below 9"):
        get_method(tiny_pretrain_config(**{**IJEPA, "method.min_keep": 10}), total_steps=TOTAL)
    with pytest.raises(ValueError, match="method.loss='l1'"):
        get_method(tiny_pretrain_config(**IJEPA, **{"method.loss": "l1"}), total_steps=TOTAL)
    with pytest.raises(ValueError, match="total_steps"):
        get_method(tiny_pretrain_config(**IJEPA))


@pytest.mark.slow  # a train step to compile
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(setup):
    _, method, batch, params, state = setup
    tx = optax.adam(3e-3)

    @jax.jit
    def step(params, opt, state, i):
        (loss, (state, _)), g = jax.value_and_grad(method.loss, has_aux=True)(
            params, state, batch, jax.random.key(7), i, None
        )
        updates, opt = tx.update(g, opt, params)
        params = optax.apply_updates(params, updates)
        return params, opt, method.update_state(params, state, i), loss

    opt = tx.init(params)
    losses = []
    for i in range(8):
        params, opt, state, loss = step(params, opt, state, i)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
