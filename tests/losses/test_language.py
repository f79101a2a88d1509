import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax.losses import language
from ssl_jax.losses.language import masked_lm_loss, replaced_token_detection_loss

loss_fn = jax.jit(masked_lm_loss)


def reference(logits, labels, weights):
    """BERT's get_masked_lm_output with explicit loops, in float64."""
    logits = np.asarray(logits, np.float64)
    total, count = 0.0, 0.0
    for i, m in np.ndindex(*labels.shape):
        z = logits[i, m]
        log_softmax = z - (z.max() + np.log(np.sum(np.exp(z - z.max()))))
        total += weights[i, m] * -log_softmax[labels[i, m]]
        count += weights[i, m]
    return total / (count + 1e-5)


def test_matches_berts_loss_and_ignores_padding_positions():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 11)).astype(np.float32) * 3
    labels = rng.integers(0, 11, (3, 5))
    weights = (np.arange(5)[None] < np.array([[5], [2], [0]])).astype(np.float32)
    got = loss_fn(logits, labels, weights)
    assert got.shape == () and got.dtype == jnp.float32
    np.testing.assert_allclose(got, reference(logits, labels, weights), rtol=1e-5)
    changed = logits.copy()
    changed[1, 2:] = 100.0  # padding of the position list: no effect
    changed[2] = -50.0
    np.testing.assert_allclose(loss_fn(changed, labels, weights), got, rtol=1e-6)
    assert float(loss_fn(logits, labels, np.zeros_like(weights))) == 0.0


def test_gradients_and_batch_permutation():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 3, 7))
    labels = rng.integers(0, 7, (4, 3))
    weights = rng.integers(0, 2, (4, 3)).astype(np.float64)
    check_grads(lambda z: masked_lm_loss(z, labels, weights), (logits,), order=1, modes="rev")
    perm = rng.permutation(4)
    np.testing.assert_allclose(
        loss_fn(logits[perm], labels[perm], weights[perm]),
        loss_fn(logits, labels, weights),
        rtol=1e-6,
    )


def test_shape_errors_and_doctest():
    with pytest.raises(ValueError, match=r"logits \(N, M, V\)"):
        masked_lm_loss(jnp.zeros((2, 3)), jnp.zeros((2,), int), jnp.zeros((2,)))
    flags = doctest.ELLIPSIS
    assert doctest.testmod(language, optionflags=flags).failed == 0


def rtd_reference(logits, replaced, weights):
    """ELECTRA's get_discriminator_output with explicit loops, in float64."""
    total = count = 0.0
    for index in np.ndindex(*logits.shape):
        p = 1 / (1 + np.exp(-np.float64(logits[index])))
        r = float(replaced[index])
        total += weights[index] * -(r * np.log(p) + (1 - r) * np.log(1 - p))
        count += weights[index]
    return total / (count + 1e-6)


def test_replaced_token_detection_matches_electras_loss():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 7)).astype(np.float32) * 2
    replaced = rng.random((3, 7)) < 0.2
    weights = (np.arange(7)[None] < np.array([[7], [4], [1]])).astype(np.float32)
    got = jax.jit(replaced_token_detection_loss)(logits, replaced, weights)
    np.testing.assert_allclose(got, rtd_reference(logits, replaced, weights), rtol=1e-5)
    changed = logits.copy()
    changed[1, 4:] = 30.0  # padding: no effect
    np.testing.assert_allclose(replaced_token_detection_loss(changed, replaced, weights), got)
    with pytest.raises(ValueError, match="of one shape"):
        replaced_token_detection_loss(logits, replaced[:, :3], weights)
