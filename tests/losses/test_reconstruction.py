import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax.losses import reconstruction
from ssl_jax.losses.reconstruction import masked_l1, masked_mse
from ssl_jax.pretext.masks import central_block_mask

loss_fn = jax.jit(masked_mse)


def masked_mse_reference(pred, target, mask, weights=None):
    """MAE's forward_loss (and Pathak's weighted L2) with explicit loops, in float64."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    mask = np.asarray(mask, np.float64)
    weights = np.ones_like(mask) if weights is None else np.broadcast_to(weights, mask.shape)
    total, count = 0.0, 0.0
    for index in np.ndindex(*mask.shape):
        error = np.mean((pred[index] - target[index]) ** 2)
        total += weights[index] * mask[index] * error
        count += mask[index]
    return total / count


def test_matches_maes_loss_on_patches():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, 3, 8, 12)).astype(np.float32)
    mask = rng.uniform(size=(3, 8)) < 0.75
    got = loss_fn(pred, target, mask)
    assert got.shape == () and got.dtype == jnp.float32
    np.testing.assert_allclose(got, masked_mse_reference(pred, target, mask), rtol=1e-5)
    np.testing.assert_allclose(loss_fn(pred, target, mask.astype(np.float32)), got, rtol=1e-6)


def test_matches_the_reference_on_images_with_a_pixel_mask():
    rng = np.random.default_rng(1)
    pred, target = rng.uniform(size=(2, 2, 6, 5, 3)).astype(np.float32)
    mask = rng.uniform(size=(2, 6, 5)) < 0.3
    np.testing.assert_allclose(
        loss_fn(pred, target, mask), masked_mse_reference(pred, target, mask), rtol=1e-5
    )


def test_pathaks_overlap_weighting_for_the_central_block():
    """Predicted block = the central 8x8 of 16x16; its 1 px border overlaps the context and is
    weighted 10x; the denominator stays the number of predicted pixels."""
    rng = np.random.default_rng(2)
    pred, target = rng.uniform(size=(2, 3, 16, 16, 3)).astype(np.float32)
    block = np.broadcast_to(central_block_mask(16, 16), (3, 16, 16))
    hole = central_block_mask(16, 16, fraction=(8 - 2 * 1) / 16)
    weights = jnp.where(hole, 1.0, 10.0)
    got = loss_fn(pred, target, block, weights=weights)
    want = masked_mse_reference(pred, target, block, np.asarray(weights))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    per_pixel = np.mean((pred.astype(np.float64) - target) ** 2, axis=-1)
    by_hand = (per_pixel[:, hole].sum() + 10 * per_pixel[:, block[0] & ~hole].sum()) / (3 * 64)
    np.testing.assert_allclose(got, by_hand, rtol=1e-5)
    assert not np.isclose(got, loss_fn(pred, target, block), rtol=1e-3)


def test_unit_weights_change_nothing():
    rng = np.random.default_rng(3)
    pred, target = rng.normal(size=(2, 4, 5, 6)).astype(np.float32)
    mask = rng.uniform(size=(4, 5)) < 0.5
    np.testing.assert_allclose(
        loss_fn(pred, target, mask, weights=np.ones(5)), loss_fn(pred, target, mask), rtol=1e-6
    )


def test_visible_elements_get_no_gradient_and_do_not_change_the_loss():
    rng = np.random.default_rng(4)
    pred, target = rng.normal(size=(2, 4, 6, 5)).astype(np.float32)
    mask = rng.uniform(size=(4, 6)) < 0.5
    grad = np.asarray(jax.grad(masked_mse)(pred, target, mask))
    assert np.all(grad[~mask] == 0) and np.all(np.abs(grad[mask]).sum(-1) > 0)
    changed = np.where(mask[..., None], pred, 1e6)
    np.testing.assert_allclose(loss_fn(changed, target, mask), loss_fn(pred, target, mask))


def test_invariant_to_batch_permutation():
    rng = np.random.default_rng(5)
    pred, target = rng.normal(size=(2, 6, 4, 3)).astype(np.float32)
    mask = rng.uniform(size=(6, 4)) < 0.5
    perm = rng.permutation(6)
    np.testing.assert_allclose(
        loss_fn(pred[perm], target[perm], mask[perm]), loss_fn(pred, target, mask), rtol=1e-6
    )


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(6)
    pred, target = rng.normal(size=(2, 3, 4, 5))
    mask = rng.uniform(size=(3, 4)) < 0.6
    weights = rng.uniform(0.5, 2.0, size=(4,))
    with jax.enable_x64(True):
        check_grads(
            lambda p, t: masked_mse(p, t, mask, weights=weights),
            (jnp.asarray(pred), jnp.asarray(target)),
            order=2,
            modes=["rev"],
        )
        got = masked_mse(jnp.asarray(pred), jnp.asarray(target), mask)
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, masked_mse_reference(pred, target, mask), rtol=1e-12)


def test_empty_mask_gives_zero_with_finite_gradients():
    pred, target = jnp.ones((2, 3, 4)), jnp.zeros((2, 3, 4))
    mask = jnp.zeros((2, 3), bool)
    assert float(loss_fn(pred, target, mask)) == 0.0
    grad = jax.grad(masked_mse)(pred, target, mask)
    np.testing.assert_array_equal(grad, 0.0)


def test_low_precision_inputs_give_a_float32_loss():
    rng = np.random.default_rng(7)
    pred, target = rng.normal(size=(2, 2, 3, 4)).astype(np.float32)
    mask = np.array([[True, False, True], [False, True, True]])
    got = masked_mse(pred.astype(jnp.bfloat16), target.astype(jnp.bfloat16), mask)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, masked_mse_reference(pred, target, mask), rtol=2e-2)


def test_shape_errors_say_what_was_expected():
    x = jnp.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="same shape"):
        masked_mse(x, jnp.zeros((2, 3, 5)), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="leading axes of pred"):
        masked_mse(x, x, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="leading axes of pred"):
        masked_mse(x, x, jnp.ones((2, 3, 4, 1)))
    with pytest.raises(ValueError, match="weights broadcastable"):
        masked_mse(x, x, jnp.ones((2, 3)), weights=jnp.ones(4))
    with pytest.raises(ValueError, match="weights broadcastable"):
        masked_mse(x, x, jnp.ones((2, 3)), weights=jnp.ones((2, 2, 3)))


def test_docstring_examples():
    assert doctest.testmod(reconstruction, raise_on_error=True).attempted >= 1


def simmim_l1_reference(pred_patches, image, pixel_mask, patch):
    """SimMIM's ``forward``-loss in float64, in pixels: the predicted patches laid back out as
    an image, ``(|x - x_rec| * mask).sum() / mask.sum() / in_chans`` with the pixel mask."""
    n, h, w, c = image.shape
    g = h // patch
    rec = pred_patches.reshape(n, g, g, patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    rec = rec.reshape(n, h, w, c).astype(np.float64)
    error = np.abs(image.astype(np.float64) - rec) * pixel_mask[..., None]
    return error.sum() / pixel_mask.sum() / c


def test_masked_l1_is_simmims_pixel_loss():
    rng = np.random.default_rng(70)
    image = rng.normal(size=(3, 8, 8, 3)).astype(np.float32)
    patch_mask = rng.uniform(size=(3, 4)) < 0.6
    patch_mask[0, 0] = True
    pred = rng.normal(size=(3, 4, 48)).astype(np.float32)
    target = image.reshape(3, 2, 4, 2, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(3, 4, 48)
    pixel_mask = np.repeat(np.repeat(patch_mask.reshape(3, 2, 2), 4, axis=1), 4, axis=2)
    got = jax.jit(masked_l1)(pred, target, patch_mask)
    np.testing.assert_allclose(got, simmim_l1_reference(pred, image, pixel_mask, 4), rtol=1e-5)
    assert abs(float(got) - float(masked_mse(pred, target, patch_mask))) > 1e-2
    assert float(masked_l1(pred, target, np.zeros((3, 4), bool))) == 0.0
    grads = jax.grad(masked_l1)(pred, target, patch_mask)
    assert bool(jnp.all(grads[~patch_mask] == 0)) and bool(jnp.any(grads[patch_mask] != 0))
    with pytest.raises(ValueError, match="leading axes"):
        masked_l1(pred, target, np.ones((3, 5), bool))
