"""iBOT's patch loss against a float64 NumPy transcription of the authors' ``iBOTLoss``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax.losses import dino_center_update, ibot_patch_loss

T, N, L, K = 2, 3, 5, 7


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_ibot_patch_loss(student, teacher, center, mask, student_temp, teacher_temp):
    """``iBOTLoss.forward``'s patch term: loop over crops q == v, per-image masked mean."""
    total = 0.0
    for t in range(student.shape[0]):
        q = np_softmax((teacher[t] - center) / teacher_temp)
        log_p = np.log(np_softmax(student[t] / student_temp))
        loss = np.sum(-q * log_p, axis=-1)
        m = mask[t].astype(np.float64)
        total += np.mean(np.sum(loss * m, -1) / np.maximum(m.sum(-1), 1.0))
    return total / student.shape[0]


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(2, T, N, L, K))
    center = rng.normal(size=K) * 0.1
    mask = rng.random((T, N, L)) < 0.5
    mask[0, 1] = False  # an image without masked patches
    return student, teacher, center, mask


def test_matches_numpy_reference(inputs):
    student, teacher, center, mask = inputs
    got = jax.jit(lambda *a: ibot_patch_loss(*a, student_temp=0.1, teacher_temp=0.07))(
        *(jnp.asarray(a, jnp.float32) for a in (student, teacher, center)), jnp.asarray(mask)
    )
    expected = np_ibot_patch_loss(student, teacher, center, mask, 0.1, 0.07)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # The reference can tell: averaging over all masked patches of the batch at once differs.
    q = np_softmax((teacher - center) / 0.07)
    ce = np.sum(-q * np.log(np_softmax(student / 0.1)), -1)
    assert not np.isclose(expected, np.sum(ce * mask) / mask.sum(), rtol=1e-3)


def test_only_masked_patches_count_and_unmasked_images_count_as_zero(inputs):
    student, teacher, center, mask = inputs
    base = ibot_patch_loss(student, teacher, center, mask)
    changed = np.where(mask[..., None], student, student + 5 * np.arange(K))
    np.testing.assert_allclose(ibot_patch_loss(changed, teacher, center, mask), base, rtol=1e-6)
    none = np.zeros_like(mask)
    assert float(ibot_patch_loss(student, teacher, center, none)) == 0.0


def test_gradients_and_stop_gradient(inputs):
    student, teacher, center, mask = (jnp.asarray(a) for a in inputs)

    def f(s, t, c):
        return ibot_patch_loss(s, jax.lax.stop_gradient(t), jax.lax.stop_gradient(c), mask)

    gs, gt, gc = jax.grad(f, (0, 1, 2))(student, teacher, center)
    assert not np.any(gt) and not np.any(gc)
    # No gradient to unmasked student patches; the student's gradient is q - p (softmax CE).
    assert not np.any(np.asarray(gs)[~np.asarray(mask)])
    check_grads(
        lambda s: ibot_patch_loss(s, teacher, center, mask), (student,), order=1, modes=["rev"]
    )


def test_center_update_averages_every_patch(inputs):
    _, teacher, center, _ = inputs
    new = dino_center_update(center, teacher, momentum=0.9)
    np.testing.assert_allclose(
        new, 0.9 * center + 0.1 * teacher.mean(2).sum(1).sum(0) / (T * N), rtol=1e-6
    )


def test_bad_shapes_raise(inputs):
    student, teacher, center, mask = inputs
    with pytest.raises(ValueError, match="of one shape"):
        ibot_patch_loss(student[0], teacher[0], center, mask[0])
    with pytest.raises(ValueError, match="bool mask of shape"):
        ibot_patch_loss(student, teacher, center, mask.astype(int))
    with pytest.raises(ValueError, match="center of shape"):
        ibot_patch_loss(student, teacher, center[:3], mask)
    with pytest.raises(ValueError, match="teacher_temp > 0"):
        ibot_patch_loss(student, teacher, center, mask, teacher_temp=0.0)
