import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.evaluators.augmented_linear import (
    BN_EPS,
    fit_batch_size,
    head_logits,
    init_head,
    make_head_optimizer,
    make_head_train_step,
    make_views_fn,
)
from ssl_jax.parallel import make_mesh


def images(n=8, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_views_without_crop_or_flip_are_the_images():
    x = images()
    views = make_views_fn(8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0)
    out = jax.jit(views)(x, jax.random.key(0))
    assert out.dtype == jnp.uint8
    np.testing.assert_array_equal(out, x)
    flipped = make_views_fn(8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=1.0)
    np.testing.assert_array_equal(flipped(x, jax.random.key(0)), x[:, :, ::-1])


def test_views_are_random_crops_at_the_input_size():
    x = images(size=16)
    views = jax.jit(make_views_fn(8))
    a, b = views(x, jax.random.key(0)), views(x, jax.random.key(1))
    assert a.shape == (8, 8, 8, 3) and a.dtype == jnp.uint8
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, views(x, jax.random.key(0)))


def flat_encode(arrays, images):
    """A frozen 'encoder': a fixed projection of the pixels to 4 features."""
    x = images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0
    return x @ arrays["proj"]


def identity_views(images, key):
    return images


@pytest.fixture
def batch():
    rng = np.random.default_rng(1)
    arrays = {"proj": jnp.asarray(rng.normal(size=(8 * 8 * 3, 4)), jnp.float32)}
    return arrays, images(n=16), jnp.asarray(np.arange(16) % 3)


def test_first_step_is_nesterov_sgd_on_the_batchnormed_features(batch):
    arrays, x, y = batch
    lr, momentum = 0.5, 0.9
    tx, _ = make_head_optimizer(lr, 10, momentum=momentum)
    step = jax.jit(make_head_train_step(flat_encode, identity_views, tx, head_norm="batchnorm"))
    params, stats = init_head(4, 3)
    new_params, new_stats, _, metrics = step(
        params, stats, tx.init(params), arrays, x, y, jax.random.key(0)
    )
    f = np.asarray(flat_encode(arrays, x), np.float64)
    mean, var = f.mean(0), f.var(0)
    np.testing.assert_allclose(new_stats["mean"], 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(new_stats["var"], 0.9 + 0.1 * var, rtol=1e-5)
    z = (f - mean) / np.sqrt(var + BN_EPS)
    residual = (1.0 / 3.0 - np.eye(3)[np.asarray(y)]) / len(y)  # softmax of zero logits
    grad_w, grad_b = z.T @ residual, residual.sum(0)
    # Nesterov from a zero trace: the update is lr * (1 + momentum) * grad.
    np.testing.assert_allclose(new_params["w"], -lr * (1 + momentum) * grad_w, atol=1e-5)
    np.testing.assert_allclose(new_params["b"], -lr * (1 + momentum) * grad_b, atol=1e-6)
    assert float(metrics["loss"]) == pytest.approx(np.log(3.0), rel=1e-6)


@pytest.mark.parametrize(
    "head_norm, lr",
    [("batchnorm", 0.1), ("none", 0.01)],  # features of std ~4, mean up to 17
)
def test_steps_on_a_fixed_batch_lower_the_loss(batch, head_norm, lr):
    arrays, x, y = batch
    tx, _ = make_head_optimizer(lr, 30)
    step = jax.jit(make_head_train_step(flat_encode, identity_views, tx, head_norm=head_norm))
    params, stats = init_head(4, 3)
    opt_state = tx.init(params)
    losses = []
    for i in range(30):
        params, stats, opt_state, metrics = step(
            params, stats, opt_state, arrays, x, y, jax.random.key(i)
        )
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.8 * losses[0]
    # Evaluation with the running statistics of a constant batch: its training logits.
    logits = head_logits(
        jax.tree.map(np.asarray, params),
        jax.tree.map(np.asarray, stats),
        np.asarray(flat_encode(arrays, x)),
        head_norm=head_norm,
    )
    assert 100.0 * np.mean(logits.argmax(1) == np.asarray(y)) > 50.0


def test_unknown_head_norm_is_an_error():
    tx, _ = make_head_optimizer(0.1, 10)
    with pytest.raises(ValueError, match="head_norm"):
        make_head_train_step(flat_encode, identity_views, tx, head_norm="layernorm")


def test_weight_decay_reaches_the_weights_only():
    tx, _ = make_head_optimizer(1.0, 10, momentum=0.0, weight_decay=0.5)
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.5 * np.ones((2, 2)))
    np.testing.assert_allclose(updates["b"], np.zeros(2))


def test_batch_size_fits_a_small_labelled_subset():
    mesh = make_mesh(-1)  # 8 fake devices
    assert fit_batch_size(256, 1437, mesh) == 256
    assert fit_batch_size(256, 100, mesh) == 96
    with pytest.raises(ValueError, match="label_fraction"):
        fit_batch_size(64, 7, mesh)
    with pytest.raises(ValueError, match="multiple of 8"):
        fit_batch_size(12, 100, mesh)
