import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from ssl_jax.losses import distillation
from ssl_jax.losses.distillation import dino_center_update, dino_loss, dino_teacher_temperature


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def dino_reference(student, teacher, center, student_temp, teacher_temp):
    """The authors' DINOLoss.forward in float64 NumPy: crops chunked from one concatenated batch."""
    num_crops, n, k = student.shape
    student_out = np.split(student.reshape(-1, k).astype(np.float64) / student_temp, num_crops)
    teacher_out = _softmax((teacher.reshape(-1, k).astype(np.float64) - center) / teacher_temp)
    teacher_out = np.split(teacher_out, len(teacher))
    total_loss, n_loss_terms = 0.0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            total_loss += np.sum(-q * _log_softmax(student_out[v]), axis=-1).mean()
            n_loss_terms += 1
    return total_loss / n_loss_terms


def _logits(seed, num_student, num_teacher, n=6, k=10):
    rng = np.random.default_rng(seed)
    student = rng.normal(size=(num_student, n, k)).astype(np.float32)
    teacher = rng.normal(size=(num_teacher, n, k)).astype(np.float32)
    center = 0.3 * rng.normal(size=k).astype(np.float32)
    return student, teacher, center


@pytest.mark.parametrize(
    "num_student, num_teacher, student_temp, teacher_temp",
    [(4, 2, 0.1, 0.04), (2, 2, 0.1, 0.07), (3, 1, 0.5, 0.2), (6, 2, 1.0, 1.0)],
)
def test_matches_numpy_reference(num_student, num_teacher, student_temp, teacher_temp):
    student, teacher, center = _logits(0, num_student, num_teacher)
    fn = jax.jit(
        lambda s, t, c: dino_loss(s, t, c, student_temp=student_temp, teacher_temp=teacher_temp)
    )
    want = dino_reference(student, teacher, center, student_temp, teacher_temp)
    np.testing.assert_allclose(fn(student, teacher, center), want, rtol=1e-5)


def test_two_crops_use_only_the_cross_pairs():
    # q0 = (1/4, 3/4), q1 = (3/4, 1/4); p0 = (1/2, 1/2), p1 = (3/4, 1/4); temperatures 1.
    teacher = jnp.log(jnp.array([[[1.0, 3.0]], [[3.0, 1.0]]]))
    student = jnp.log(jnp.array([[[1.0, 1.0]], [[3.0, 1.0]]]))
    got = dino_loss(student, teacher, jnp.zeros(2), student_temp=1.0, teacher_temp=1.0)
    q0_p1 = -(0.25 * math.log(0.75) + 0.75 * math.log(0.25))
    q1_p0 = math.log(2.0)
    np.testing.assert_allclose(got, (q0_p1 + q1_p0) / 2, rtol=1e-6)


def test_invariances():
    student, teacher, center = _logits(1, 5, 2, n=8)
    rng = np.random.default_rng(1)
    base = dino_loss(student, teacher, center)
    perm = rng.permutation(8)
    np.testing.assert_allclose(
        dino_loss(student[:, perm], teacher[:, perm], center), base, rtol=1e-5
    )
    local = np.array([0, 1, 4, 2, 3])
    np.testing.assert_allclose(dino_loss(student[local], teacher, center), base, rtol=1e-5)
    row_shift = rng.normal(size=(5, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(dino_loss(student + row_shift, teacher, center), base, rtol=1e-5)
    shift = rng.normal(size=10).astype(np.float32)
    np.testing.assert_allclose(dino_loss(student, teacher + shift, center + shift), base, rtol=1e-5)


def test_center_update_matches_formula():
    _, teacher, center = _logits(2, 2, 2)
    got = jax.jit(lambda c, t: dino_center_update(c, t, momentum=0.8))(center, teacher)
    batch_center = np.sum(teacher.reshape(-1, 10), axis=0) / (2 * 6)
    np.testing.assert_allclose(got, 0.8 * center + 0.2 * batch_center, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("warmup_steps, total_steps", [(10, 30), (1, 4), (0, 5)])
def test_teacher_temperature_matches_linspace_schedule(warmup_steps, total_steps):
    kw = dict(warmup_teacher_temp=0.04, teacher_temp=0.07)
    want = np.concatenate(
        (
            np.linspace(kw["warmup_teacher_temp"], kw["teacher_temp"], warmup_steps),
            np.ones(total_steps - warmup_steps) * kw["teacher_temp"],
        )
    )
    fn = jax.jit(
        jax.vmap(
            lambda i: dino_teacher_temperature(
                i, warmup_steps=warmup_steps, total_steps=total_steps, **kw
            )
        )
    )
    np.testing.assert_allclose(fn(jnp.arange(total_steps)), want, rtol=1e-6)
    np.testing.assert_allclose(fn(jnp.array([total_steps + 7])), [0.07], rtol=1e-6)


def test_gradients_match_finite_differences():
    student, teacher, center = _logits(3, 3, 2, n=3, k=4)
    with jax.enable_x64(True):
        check_grads(
            jax.jit(lambda s, t, c: dino_loss(s, t, c, student_temp=0.5, teacher_temp=0.3)),
            tuple(jnp.asarray(x, jnp.float64) for x in (student, teacher, center)),
            order=2,
            modes=["rev"],
        )


def test_teacher_and_center_receive_gradient_unless_caller_stops_it():
    student, teacher, center = _logits(4, 4, 2)
    grads = jax.jit(jax.grad(dino_loss, argnums=(1, 2)))(student, teacher, center)
    assert all(float(jnp.linalg.norm(g)) > 1e-3 for g in grads)


def test_stable_at_large_logits():
    student, teacher, center = _logits(5, 4, 2)
    loss, grads = jax.jit(jax.value_and_grad(dino_loss))(1e4 * student, 1e4 * teacher, center)
    assert jnp.isfinite(loss)
    assert jnp.all(jnp.isfinite(grads))


def test_sharded_batch_equals_single_device():
    student, teacher, center = _logits(6, 4, 2, n=16)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    batch = NamedSharding(mesh, P(None, "data"))
    fn = jax.jit(lambda s, t, c: (dino_loss(s, t, c), dino_center_update(c, t)))
    sharded = fn(jax.device_put(student, batch), jax.device_put(teacher, batch), center)
    for got, want in zip(sharded, fn(student, teacher, center), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize(
    "shapes, message",
    [
        (((4, 10), (2, 6, 10), (10,)), r"\(crops, batch, outputs\)"),
        (((4, 6, 10), (2, 5, 10), (10,)), "same"),
        (((4, 6, 10), (2, 6, 9), (10,)), "same"),
        (((2, 6, 10), (3, 6, 10), (10,)), "1 <= T <= S"),
        (((1, 6, 10), (1, 6, 10), (10,)), "S >= 2"),
        (((4, 6, 10), (2, 6, 10), (9,)), "center of shape"),
    ],
)
def test_shape_errors(shapes, message):
    with pytest.raises(ValueError, match=message):
        dino_loss(*(jnp.ones(s) for s in shapes))


def test_argument_errors():
    s, t, c = jnp.ones((4, 2, 3)), jnp.ones((2, 2, 3)), jnp.ones(3)
    with pytest.raises(ValueError, match="teacher_temp > 0"):
        dino_loss(s, t, c, teacher_temp=0.0)
    with pytest.raises(ValueError, match="student_temp > 0"):
        dino_loss(s, t, c, student_temp=-1.0)
    with pytest.raises(ValueError, match=r"center \(K,\)"):
        dino_center_update(jnp.ones(4), t)
    with pytest.raises(ValueError, match="momentum"):
        dino_center_update(c, t, momentum=1.5)
    with pytest.raises(ValueError, match="warmup_steps <= total_steps"):
        dino_teacher_temperature(0, warmup_steps=10, total_steps=5)


def test_docstring_examples():
    failures, _ = doctest.testmod(distillation, verbose=False)
    assert failures == 0
