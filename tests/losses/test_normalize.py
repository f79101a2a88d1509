import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import l2_normalize


@pytest.mark.parametrize("axis", [-1, 0])
def test_matches_numpy_division_by_the_clamped_norm(axis):
    x = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    x[2] = 0.0
    want = x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)
    np.testing.assert_allclose(l2_normalize(jnp.asarray(x), axis=axis), want, rtol=1e-6)


def test_zero_row_stays_zero_with_a_finite_gradient():
    x = jnp.zeros((2, 3)).at[1].set(jnp.array([3.0, 4.0, 0.0]))
    y = l2_normalize(x)
    np.testing.assert_array_equal(y[0], 0.0)
    np.testing.assert_allclose(y[1], [0.6, 0.8, 0.0], rtol=1e-6)
    grad = jax.grad(lambda v: jnp.sum(l2_normalize(v) ** 2))(x)
    assert np.all(np.isfinite(grad))
