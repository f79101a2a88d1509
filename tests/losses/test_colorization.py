import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax.losses import colorization
from ssl_jax.losses.colorization import ab_regression_loss, rebalanced_cross_entropy


def rebalanced_cross_entropy_reference(logits, targets, weights, where=None):
    """Zhang et al. eq. 2 with v(Z) = w[argmax Z] (eq. 3), pixel by pixel in float64, averaged."""
    logits = np.asarray(logits, np.float64).reshape(-1, logits.shape[-1])
    targets = np.asarray(targets, np.float64).reshape(logits.shape)
    keep = np.ones(len(logits), bool) if where is None else np.asarray(where).ravel()
    total = 0.0
    for s, z, k in zip(logits, targets, keep, strict=True):
        if k:
            log_softmax = s - s.max() - np.log(np.sum(np.exp(s - s.max())))
            total += -weights[np.argmax(z)] * np.sum(z * log_softmax)
    return total / max(keep.sum(), 1)


def ab_regression_reference(pred, target, where=None):
    """Zhang et al. eq. 1, 1/2 ||Y - Y_hat||^2 per pixel, in float64, averaged."""
    per_pixel = 0.5 * np.sum((np.float64(pred) - np.float64(target)) ** 2, axis=-1)
    keep = np.ones(per_pixel.shape, bool) if where is None else np.asarray(where)
    return per_pixel[keep].sum() / max(keep.sum(), 1)


def _batch(seed, shape=(2, 3, 4), q=7):
    rng = np.random.default_rng(seed)
    logits = (3.0 * rng.normal(size=(*shape, q))).astype(np.float32)
    targets = rng.dirichlet(np.full(q, 0.3), size=shape).astype(np.float32)
    weights = rng.uniform(0.2, 5.0, size=q).astype(np.float32)
    where = rng.uniform(size=shape) < 0.6
    return logits, targets, weights, where


def test_matches_numpy_reference():
    logits, targets, weights, where = _batch(0)
    fn = jax.jit(rebalanced_cross_entropy)
    want = rebalanced_cross_entropy_reference(logits, targets, weights)
    np.testing.assert_allclose(fn(logits, targets, weights), want, rtol=1e-5)
    masked = jax.jit(lambda *a: rebalanced_cross_entropy(*a[:3], where=a[3]))
    want = rebalanced_cross_entropy_reference(logits, targets, weights, where)
    np.testing.assert_allclose(masked(logits, targets, weights, where), want, rtol=1e-5)


def test_unit_weights_and_one_hot_targets_give_cross_entropy():
    logits, _, _, _ = _batch(1)
    labels = np.random.default_rng(1).integers(0, 7, size=logits.shape[:-1])
    got = rebalanced_cross_entropy(logits, jax.nn.one_hot(labels, 7), jnp.ones(7))
    log_probs = jax.nn.log_softmax(logits)
    want = -np.mean(np.take_along_axis(np.asarray(log_probs), labels[..., None], -1))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_weight_of_argmax_bin_scales_each_pixel():
    logits, targets, weights, _ = _batch(2, shape=(1, 1, 1))
    base = rebalanced_cross_entropy(logits, targets, jnp.ones(7))
    got = rebalanced_cross_entropy(logits, targets, weights)
    np.testing.assert_allclose(got, weights[np.argmax(targets)] * base, rtol=1e-5)


def test_mean_does_not_depend_on_image_size_or_pixel_order():
    logits, targets, weights, _ = _batch(3)
    base = rebalanced_cross_entropy(logits, targets, weights)
    tiled = [np.tile(x, (1, 2, 3, 1)) for x in (logits, targets)]
    np.testing.assert_allclose(rebalanced_cross_entropy(*tiled, weights), base, rtol=1e-5)
    perm = np.random.default_rng(3).permutation(24)
    flat = [x.reshape(1, 24, 1, -1)[:, perm] for x in (logits, targets)]
    np.testing.assert_allclose(rebalanced_cross_entropy(*flat, weights), base, rtol=1e-5)


def test_empty_mask_gives_zero():
    logits, targets, weights, _ = _batch(4)
    got = rebalanced_cross_entropy(logits, targets, weights, where=np.zeros((2, 3, 4), bool))
    assert float(got) == 0.0


def test_gradients_match_finite_differences():
    logits, targets, weights, where = _batch(5, shape=(1, 2, 2), q=4)
    with jax.enable_x64(True):
        args = [jnp.asarray(x, jnp.float64) for x in (logits, targets, weights)]
        fn = jax.jit(lambda s: rebalanced_cross_entropy(s, *args[1:], where=where))
        check_grads(fn, (args[0],), order=1, modes=["rev"])


def test_gradient_is_weighted_softmax_minus_target():
    logits, targets, weights, _ = _batch(6)
    grad = jax.jit(jax.grad(rebalanced_cross_entropy))(logits, targets, weights)
    v = weights[np.argmax(targets, -1)][..., None]
    want = v * (np.asarray(jax.nn.softmax(logits)) - targets) / 24
    np.testing.assert_allclose(grad, want, atol=1e-6)


def test_stable_for_large_logits():
    logits, targets, weights, _ = _batch(7)
    loss, grad = jax.value_and_grad(rebalanced_cross_entropy)(1e4 * logits, targets, weights)
    assert jnp.isfinite(loss) and jnp.all(jnp.isfinite(grad))


@pytest.mark.parametrize(
    "shapes, message",
    [
        (((2, 3, 7), (2, 3, 6), (7,)), "same"),
        (((2, 3, 7), (2, 3, 7), (6,)), "one weight per bin"),
        (((7,), (7,), (7,)), "same"),
    ],
)
def test_shape_errors(shapes, message):
    with pytest.raises(ValueError, match=message):
        rebalanced_cross_entropy(*(jnp.ones(s) for s in shapes))
    with pytest.raises(ValueError, match="where"):
        rebalanced_cross_entropy(*_batch(0)[:3], where=jnp.ones((2, 3)))


def test_regression_matches_numpy_reference():
    rng = np.random.default_rng(8)
    pred, target = (50 * rng.normal(size=(2, 2, 3, 4, 2))).astype(np.float32)
    where = rng.uniform(size=(2, 3, 4)) < 0.5
    fn = jax.jit(lambda a, b, m: (ab_regression_loss(a, b), ab_regression_loss(a, b, where=m)))
    full, masked = fn(pred, target, where)
    np.testing.assert_allclose(full, ab_regression_reference(pred, target), rtol=1e-5)
    np.testing.assert_allclose(masked, ab_regression_reference(pred, target, where), rtol=1e-5)
    np.testing.assert_allclose(full, np.mean((pred - target) ** 2), rtol=1e-5)


def test_regression_gradients_match_finite_differences():
    rng = np.random.default_rng(9)
    pred, target = rng.normal(size=(2, 1, 2, 2, 2))
    with jax.enable_x64(True):
        check_grads(
            jax.jit(ab_regression_loss), (jnp.asarray(pred), jnp.asarray(target)), 1, ["rev"]
        )


def test_regression_shape_errors():
    with pytest.raises(ValueError, match=r"\(N, H, W, 2\)"):
        ab_regression_loss(jnp.ones((1, 2, 2, 2)), jnp.ones((1, 2, 2, 3)))
    with pytest.raises(ValueError, match="where"):
        ab_regression_loss(jnp.ones((1, 2, 2, 2)), jnp.ones((1, 2, 2, 2)), where=jnp.ones(2))


def test_docstring_examples():
    failures, _ = doctest.testmod(colorization, verbose=False)
    assert failures == 0
