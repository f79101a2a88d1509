"""Gradient accumulation (``optim.accumulation_steps``): micro-batches, exactness, refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import accumulation
from ssl_jax.data import make_digits_source
from ssl_jax.methods import get_method
from ssl_jax.optim import make_optimizer, make_schedule
from ssl_jax.parallel import global_batch, make_mesh
from ssl_jax.programs import pretrain
from ssl_jax.train_step import make_init_fn, make_train_step
from tests.methods.test_dino import DINO
from tests.methods.test_pretext import DEVICE_CONFIGS as PRETEXT
from tests.programs.tiny import tiny_pretrain_config

VIT = {k: v for k, v in PRETEXT["mae"].items() if k.startswith(("model.", "data.", "augment.crop"))}
# Views that do not depend on the key (whole-image crops, no flips or colour changes): the
# micro-batches see exactly the big batch's views, so the steps can be compared.
FIXED_VIEWS = {
    "augment.global_crop_scale": (1.0, 1.0),
    "augment.crop_ratio": (1.0, 1.0),
    "augment.flip_prob": 0.0,
    "augment.jitter_prob": 0.0,
    "augment.gray_prob": 0.0,
    "augment.blur_prob": 0.0,
    "augment.solarize_prob": 0.0,
    "augment.num_local_crops": 0,
}


def test_micro_batch_j_is_every_kth_row_split_over_the_devices():
    mesh = make_mesh(8)
    batch = global_batch({"x": np.arange(32 * 3).reshape(32, 3)}, mesh)
    micro = jax.jit(lambda b: accumulation.micro_batches(b, 2, mesh))(batch)["x"]
    assert micro.shape == (2, 16, 3)
    np.testing.assert_array_equal(micro[1], np.arange(32 * 3).reshape(32, 3)[1::2])
    assert micro.sharding.shard_shape(micro.shape) == (2, 2, 3)  # every device holds rows of each


def test_the_accumulated_gradient_of_a_per_example_loss_is_the_big_batch_gradient():
    mesh = make_mesh(8)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 5)).astype(np.float32), rng.normal(size=32).astype(np.float32)
    batch = global_batch({"x": x, "y": y}, mesh)
    params = {"w": jnp.asarray(rng.normal(size=5), jnp.float32)}

    def loss(params, state, batch, key):
        del key
        err = batch["x"] @ params["w"] - batch["y"]
        return jnp.mean(err**2), ({"mean_y": jnp.mean(batch["y"]), "calls": state["calls"] + 1},
                                  {"err": jnp.mean(jnp.abs(err))})  # fmt: skip

    grad_fn = jax.value_and_grad(loss, has_aux=True)
    state = {"mean_y": jnp.zeros(()), "calls": jnp.zeros((), jnp.int32)}
    key = jax.random.key(0)
    want = grad_fn(params, state, batch, key)
    got = jax.jit(lambda p, b: accumulation.accumulate(grad_fn, 4, mesh, p, state, b, key))(
        params, batch
    )
    (loss_a, (state_a, metrics_a)), grads_a = got
    (loss_b, (state_b, _)), grads_b = want
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
    np.testing.assert_allclose(grads_a["w"], grads_b["w"], rtol=1e-5)
    np.testing.assert_allclose(state_a["mean_y"], state_b["mean_y"], rtol=1e-5, atol=1e-7)
    assert int(state_a["calls"]) == 1  # integers: the last micro-batch's
    assert metrics_a["err"].shape == ()


def run_steps(config, steps):
    mesh = make_mesh(8)
    schedule = make_schedule(config, steps_per_epoch=1, total_steps=3)
    tx = make_optimizer(config.optim, schedule)
    method = get_method(config, total_steps=3)
    state = make_init_fn(method, tx, mesh)(config.seed)
    step = make_train_step(method, tx, schedule, mesh, accumulation_steps=steps)
    source = make_digits_source("train", image_size=config.data.image_size)
    losses = []
    for i in range(3):
        images, labels = source.get(np.arange(16 * i, 16 * (i + 1)))
        state, metrics = step(state, global_batch({"images": images, "labels": labels}, mesh))
        losses.append(float(metrics["loss"]))
    assert step.compilations() == 1
    return losses, jax.device_get(state)


@pytest.mark.slow  # two compiled DINO ViT steps (about 30 s)
def test_dino_with_a_vit_accumulates_exactly():
    """DINO on a ViT (no BatchNorm), views that do not depend on the key: 2 micro-batches of 8
    give the 3-step trajectory of the batch of 16: the losses, the parameters, the teacher
    and the center (an EMA of the teacher's batch mean, averaged over micro-batches)."""
    fields = {**DINO, **VIT, **FIXED_VIEWS, "total_steps": 3, "data.batch_size": 16}
    config = tiny_pretrain_config(**fields)
    want_losses, want = run_steps(config, 1)
    got_losses, got = run_steps(config, 2)
    np.testing.assert_allclose(got_losses, want_losses, rtol=2e-5)
    paths = jax.tree_util.tree_leaves_with_path(want)
    for (path, a), b in zip(paths, jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path))


def test_mae_accumulates_in_one_program(tmp_path):
    """MAE draws its masks per micro-batch (fold_in(key, j)): not the big batch's masks, so
    the run is compared with itself: finite, compiled once, through the pretraining program."""
    config = tiny_pretrain_config(
        **{"method.name": "mae", **PRETEXT["mae"], "total_steps": 2, "optim.accumulation_steps": 2}
    )
    results = pretrain.run(config, str(tmp_path))
    assert results["final_step"] == 2 and np.isfinite(results["loss"])
    assert results["train_step_compilations"] == 1


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"method.name": "simclr"}, r"simclr cannot accumulate gradients exactly: NT-Xent"),
        ({"method.name": "mocov2"}, r"mocov2 cannot accumulate.*queue"),
        ({"method.name": "vicreg"}, r"vicreg cannot accumulate.*statistics of the batch"),
        ({"method.name": "byol"}, r"this byol network has BatchNorm.*a ViT"),
        ({"method.name": "mae", **PRETEXT["mae"], "data.batch_size": 24}, r"multiple of 32"),
        ({"method.name": "colorization", "augment.recipe": "crop_flip"}, r"not been checked"),
    ],
)
def test_refused_with_the_reason(fields, message):
    config = tiny_pretrain_config(**{**fields, "optim.accumulation_steps": 4})
    with pytest.raises(ValueError, match=message):
        pretrain.build_step(config, make_mesh(8), 10, num_classes=10)
