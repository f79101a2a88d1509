import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax.losses import whitening
from ssl_jax.losses.whitening import cholesky_whiten, wmse_loss


def whiten_reference(x, eps=0.0):
    """The authors' ``Whitening2d`` in float64: centre, unbiased covariance shrunk by eps,
    ``L^{-1}`` of its Cholesky factor applied to every centred row."""
    x = x.astype(np.float64)
    centred = x - x.mean(axis=0)
    cov = centred.T @ centred / (len(x) - 1)
    cov = (1 - eps) * cov + eps * np.eye(x.shape[1])
    inverse = np.linalg.inv(np.linalg.cholesky(cov))
    return centred @ inverse.T


def wmse_reference(z1, z2, permutations, w_size, eps=0.0):
    """The authors' ``WMSE.forward`` for two views with ``norm_mse_loss``, in float64: for each
    permutation, whiten each view's sub-batches, then ``2 - 2 mean cos`` of matching rows."""
    n = len(z1)
    total = 0.0
    for perm in permutations:
        w1 = np.empty((n, z1.shape[1]))
        w2 = np.empty_like(w1)
        for idx in np.asarray(perm).reshape(-1, w_size):
            w1[idx] = whiten_reference(z1[idx], eps)
            w2[idx] = whiten_reference(z2[idx], eps)
        unit = lambda w: w / np.linalg.norm(w, axis=1, keepdims=True)
        total += 2 - 2 * np.mean(np.sum(unit(w1) * unit(w2), axis=1))
    return total / len(permutations)


def test_cholesky_whitening_gives_identity_covariance_and_matches_reference():
    rng = np.random.default_rng(60)
    x = (rng.normal(size=(40, 5)) @ rng.normal(size=(5, 5)) + 3.0).astype(np.float32)
    w = np.asarray(cholesky_whiten(x), np.float64)
    np.testing.assert_allclose(w, whiten_reference(x), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.cov(w, rowvar=False), np.eye(5), atol=1e-4)
    np.testing.assert_allclose(
        cholesky_whiten(x, eps=0.1), whiten_reference(x, 0.1), rtol=1e-3, atol=1e-4
    )


@pytest.mark.parametrize("w_size, w_iter", [(8, 1), (16, 1), (8, 3)])
def test_wmse_matches_the_authors_loop(w_size, w_iter):
    rng = np.random.default_rng(61)
    z1 = rng.normal(size=(16, 4)).astype(np.float32)
    z2 = (z1 + 0.5 * rng.normal(size=z1.shape)).astype(np.float32)
    key = jax.random.key(3)
    got = jax.jit(lambda a, b, k: wmse_loss(a, b, k, w_size=w_size, w_iter=w_iter))(z1, z2, key)
    permutations = [jax.random.permutation(k, 16) for k in jax.random.split(key, w_iter)]
    want = wmse_reference(z1, z2, permutations, w_size)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    if w_size < 16:  # the partition matters: another one gives another value
        other = wmse_reference(z1, z2, [np.arange(16)] * w_iter, w_size)
        assert abs(other - want) > 1e-3


def test_wmse_is_zero_for_affinely_related_views_and_not_for_unrelated_ones():
    rng = np.random.default_rng(62)
    z = rng.normal(size=(32, 4)).astype(np.float32)
    shift = rng.normal(size=(1, 4)).astype(np.float32)
    key = jax.random.key(0)
    assert float(wmse_loss(z, 2.5 * z + shift, key, w_size=16)) < 1e-4
    unrelated = rng.normal(size=z.shape).astype(np.float32)
    assert float(wmse_loss(z, unrelated, key, w_size=16)) > 1.0


def test_wmse_gradients_match_finite_differences():
    rng = np.random.default_rng(63)
    z1, z2 = rng.normal(size=(2, 8, 3))
    with jax.enable_x64(True):
        key = jax.random.key(1)
        check_grads(
            jax.jit(lambda a, b: wmse_loss(a, b, key, w_size=4, w_iter=2)),
            (jnp.asarray(z1), jnp.asarray(z2)),
            order=1,
            modes=["rev"],
        )


@pytest.mark.parametrize(
    "shape, kwargs, message",
    [
        ((12, 3), {"w_size": 8}, "dividing the batch N=12"),
        ((16, 8), {"w_size": 8}, r"w_size > D=8"),
        ((16, 3), {"w_size": 8, "w_iter": 0}, "w_iter >= 1"),
    ],
)
def test_wmse_errors(shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        wmse_loss(jnp.ones(shape), jnp.ones(shape), jax.random.key(0), **kwargs)


def test_docstring_example():
    failures, _ = doctest.testmod(whitening, verbose=False)
    assert failures == 0
