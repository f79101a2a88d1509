import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax.losses import capacity
from ssl_jax.losses.capacity import mmcr_loss, nuclear_norm


def mmcr_reference(z, lambda_):
    """Yerxa et al. 2023 in float64, as the authors' ``MMCR_Loss`` computes it: normalise,
    centroids over the views, ``lambda * sum_i ||Z_i||_* / N - ||C||_*``."""
    z = z.astype(np.float64)
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    centroids = np.stack([np.mean(views, axis=0) for views in z])
    global_nuc = np.sum(np.linalg.svd(centroids, compute_uv=False))
    local_nuc = sum(np.sum(np.linalg.svd(views.T, compute_uv=False)) for views in z)
    return lambda_ * local_nuc / len(z) - global_nuc


@pytest.mark.parametrize("views, lambda_", [(2, 0.0), (2, 0.5), (5, 0.1)])
def test_mmcr_matches_numpy_reference(views, lambda_):
    rng = np.random.default_rng(50)
    z = rng.normal(size=(12, views, 6)).astype(np.float32)
    got = jax.jit(lambda x: mmcr_loss(x, lambda_=lambda_))(z)
    np.testing.assert_allclose(got, mmcr_reference(z, lambda_), rtol=1e-5)


def test_mmcr_rewards_agreeing_views_and_spread_centroids():
    rng = np.random.default_rng(51)
    base = rng.normal(size=(16, 8))
    agree = np.stack([base, base + 0.01 * rng.normal(size=base.shape)], axis=1)
    disagree = np.stack([base, rng.normal(size=base.shape)], axis=1)
    collapsed = np.stack([np.ones_like(base), np.ones_like(base)], axis=1)
    assert mmcr_loss(agree) < mmcr_loss(disagree) < mmcr_loss(collapsed)
    np.testing.assert_allclose(mmcr_loss(collapsed), -4.0, rtol=1e-5)  # ||1/sqrt(8)||_* of 16 x 8


def test_mmcr_gradients_match_finite_differences():
    rng = np.random.default_rng(52)
    z = rng.normal(size=(6, 3, 4))
    with jax.enable_x64(True):
        check_grads(
            jax.jit(lambda x: mmcr_loss(x, lambda_=0.3)), (jnp.asarray(z),), order=1, modes=["rev"]
        )


def test_mmcr_invariant_to_batch_and_view_permutation_and_scale():
    rng = np.random.default_rng(53)
    z = rng.normal(size=(10, 3, 5)).astype(np.float32)
    base = mmcr_loss(z, lambda_=0.2)
    shuffled = z[rng.permutation(10)][:, rng.permutation(3)]
    np.testing.assert_allclose(mmcr_loss(shuffled, lambda_=0.2), base, rtol=1e-5)
    np.testing.assert_allclose(mmcr_loss(3.0 * z, lambda_=0.2), base, rtol=1e-5)


def test_nuclear_norm_is_the_sum_of_singular_values():
    x = np.diag([3.0, -2.0, 0.5])
    np.testing.assert_allclose(nuclear_norm(x), 5.5, rtol=1e-6)
    np.testing.assert_allclose(nuclear_norm(np.stack([x, 2 * x])), [5.5, 11.0], rtol=1e-6)


def test_mmcr_needs_two_views():
    with pytest.raises(ValueError, match=r"\(N, K, D\) embeddings of K >= 2"):
        mmcr_loss(jnp.ones((4, 1, 3)))


def test_docstring_example():
    failures, _ = doctest.testmod(capacity, verbose=False)
    assert failures == 0
