import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax.losses import teacher_student
from ssl_jax.losses.teacher_student import embedding_cosine, embedding_mse, kd_loss, seed_loss


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 5)), rng.normal(size=(6, 5))


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kd_loss_is_t_squared_kl_of_the_softened_outputs(pair, temperature):
    s, t = pair
    p, q = _softmax(t / temperature), _softmax(s / temperature)
    want = temperature**2 * np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1))
    got = kd_loss(s, t, temperature=temperature)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    check_grads(lambda s: kd_loss(s, t, temperature=temperature), (jnp.asarray(s),), 1,
                modes=("rev",))  # fmt: skip


def test_kd_loss_gradient_is_the_difference_of_soft_targets(pair):
    """d L / d s = T (q - p) / N: the paper's eq. 2, the reason for the T^2 scaling."""
    s, t = pair
    grad = jax.grad(lambda s: kd_loss(s, t, temperature=3.0))(jnp.asarray(s, jnp.float32))
    want = 3.0 * (_softmax(s / 3.0) - _softmax(t / 3.0)) / len(s)
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-6)


def test_embedding_regressions_match_numpy(pair):
    s, t = pair
    np.testing.assert_allclose(
        float(embedding_mse(s, t)), np.mean(np.sum((s - t) ** 2, -1)), rtol=1e-5
    )
    cosine = np.sum(_normalize(s) * _normalize(t), -1)
    np.testing.assert_allclose(float(embedding_cosine(s, t)), np.mean(1 - cosine), rtol=1e-5)
    assert float(embedding_cosine(3 * t, t)) == pytest.approx(0.0, abs=1e-6)  # scale-free
    check_grads(lambda s: embedding_cosine(s, t), (jnp.asarray(s),), 1, modes=("rev",))


def seed_reference(s, t, queue, ts, tt):
    """SEED's loss as the authors' code computes it, in float64 NumPy."""
    s, t, queue = _normalize(s), _normalize(t), _normalize(queue)
    logit_t = np.concatenate([t @ queue.T, np.sum(t * t, -1, keepdims=True)], -1) / tt
    logit_s = np.concatenate([s @ queue.T, np.sum(s * t, -1, keepdims=True)], -1) / ts
    log_q = logit_s - logit_s.max(-1, keepdims=True)
    log_q = log_q - np.log(np.exp(log_q).sum(-1, keepdims=True))
    return float(np.mean(-np.sum(_softmax(logit_t) * log_q, -1)))


def test_seed_loss_matches_the_reference(pair):
    s, t = pair
    queue = np.random.default_rng(1).normal(size=(7, 5))
    got = seed_loss(s, t, queue, student_temperature=0.2, teacher_temperature=0.05)
    np.testing.assert_allclose(float(got), seed_reference(s, t, queue, 0.2, 0.05), rtol=1e-5)
    check_grads(lambda s: seed_loss(s, t, queue), (jnp.asarray(s),), 1, modes=("rev",), atol=0.05)


def test_seed_loss_is_lowest_when_the_student_matches_the_teacher(pair):
    """With a sharp teacher the target is nearly one-hot on the teacher's own embedding, so a
    student equal to the teacher beats a random one."""
    s, t = pair
    queue = np.random.default_rng(2).normal(size=(50, 5))
    assert float(seed_loss(t, t, queue)) < float(seed_loss(s, t, queue))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: kd_loss(jnp.ones((2, 3)), jnp.ones((2, 4))), "one shape"),
        (lambda: kd_loss(jnp.ones((2, 3)), jnp.ones((2, 3)), temperature=0.0), "temperature"),
        (lambda: seed_loss(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.ones((4, 5))), "queue"),
        (lambda: embedding_mse(jnp.ones(3), jnp.ones(3)), "one shape"),
    ],
)
def test_bad_inputs_are_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_docstring_examples():
    assert doctest.testmod(teacher_student).failed == 0
