"""KoLeo, the masked Sinkhorn-Knopp and the probability forms of the DINO/iBOT losses
(DINOv2's pieces) against float64 NumPy transcriptions of the authors' code."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import (
    dino_cross_entropy,
    dino_loss,
    ibot_patch_loss,
    koleo_loss,
    masked_patch_cross_entropy,
    sinkhorn_knopp,
)


def np_koleo(x, eps=1e-8):
    """DINOv2's ``KoLeoLoss.forward``: normalise, nearest by dot product, PairwiseDistance."""
    x = np.asarray(x, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)
    dots = x @ x.T
    np.fill_diagonal(dots, -np.inf)
    nearest = dots.argmax(1)
    d = np.linalg.norm(x - x[nearest] + eps, axis=-1)
    return -np.mean(np.log(d + eps))


def np_sinkhorn_teacher(teacher, temp, iters=3):
    """DINOv2's ``sinkhorn_knopp_teacher`` (one process)."""
    q = np.exp(np.asarray(teacher, np.float64) / temp).T
    b, k = q.shape[1], q.shape[0]
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(1, keepdims=True)
        q /= k
        q /= q.sum(0, keepdims=True)
        q /= b
    return (q * b).T


def test_koleo_matches_numpy_and_rewards_spread():
    x = np.random.default_rng(0).normal(size=(12, 5))
    np.testing.assert_allclose(jax.jit(koleo_loss)(jnp.asarray(x)), np_koleo(x), rtol=1e-5)
    # Scale-invariant (rows are normalised) and lower for spread-out rows than bunched ones.
    np.testing.assert_allclose(koleo_loss(3 * x), koleo_loss(x), rtol=1e-5)
    bunched = x * 0.01 + np.array([1.0, 0, 0, 0, 0])
    assert float(koleo_loss(bunched)) > float(koleo_loss(x)) + 1
    grad = jax.grad(koleo_loss)(jnp.asarray(x))
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    with pytest.raises(ValueError, match="N >= 2"):
        koleo_loss(x[:1])


def test_sinkhorn_is_dinov2s_teacher_centering_and_masks_select_samples():
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(10, 6))
    np.testing.assert_allclose(
        sinkhorn_knopp(jnp.asarray(teacher), epsilon=0.07, num_iters=3),
        np_sinkhorn_teacher(teacher, 0.07),
        rtol=1e-4,
    )
    where = rng.random(10) < 0.5
    got = np.asarray(sinkhorn_knopp(jnp.asarray(teacher), epsilon=0.07, where=jnp.asarray(where)))
    np.testing.assert_allclose(got[where], np_sinkhorn_teacher(teacher[where], 0.07), rtol=1e-4)
    assert np.all(got[~where] == 0)
    none = sinkhorn_knopp(jnp.asarray(teacher), epsilon=0.07, where=jnp.zeros(10, bool))
    assert np.all(np.asarray(none) == 0)
    with pytest.raises(ValueError, match="bool array of shape \\(10,\\)"):
        sinkhorn_knopp(teacher, where=np.ones(9, bool))


def test_probability_forms_equal_the_logit_losses():
    rng = np.random.default_rng(2)
    student, teacher = rng.normal(size=(4, 3, 7)), rng.normal(size=(2, 3, 7))
    center = rng.normal(size=7) * 0.1
    q = jax.nn.softmax((teacher - center) / 0.05, axis=-1)
    np.testing.assert_allclose(
        dino_cross_entropy(student, q, student_temp=0.1),
        dino_loss(student, teacher, center, student_temp=0.1, teacher_temp=0.05),
        rtol=1e-6,
    )
    s, t = rng.normal(size=(2, 2, 3, 5, 7))
    mask = rng.random((2, 3, 5)) < 0.5
    q = jax.nn.softmax((t - center) / 0.05, axis=-1)
    np.testing.assert_allclose(
        masked_patch_cross_entropy(s, q, mask),
        ibot_patch_loss(s, t, center, mask, teacher_temp=0.05),
        rtol=1e-6,
    )
    # Sinkhorn targets are zero off the mask: the patch loss stays finite.
    codes = sinkhorn_knopp(t.reshape(-1, 7), epsilon=0.05, where=mask.reshape(-1))
    assert np.isfinite(float(masked_patch_cross_entropy(s, codes.reshape(t.shape), mask)))
