"""MSN's loss against a NumPy float64 transcription of the authors' ``init_msn_loss`` (with
their ``distributed_sinkhorn``), and PMSN's power-law prior."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.losses import msn_loss, power_law_prior


def msn_reference(anchors, targets, prototypes, *, tau=0.1, T=0.25, sinkhorn=True, weight=1.0,
                  prior=None):  # fmt: skip
    """The authors' loss: snn, sharpen, distributed_sinkhorn (3 iterations, one process),
    ``mean(sum(log(probs ** -targets)))`` and ``-sum(log(avg ** -avg)) + log K`` (uniform) or
    ``KL(avg || prior)``."""
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)

    def snn(q):
        s = unit(np.asarray(q, np.float64)) @ unit(np.asarray(prototypes, np.float64)).T / tau
        e = np.exp(s - s.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    probs = snn(anchors)
    t = snn(targets) ** (1.0 / T)
    t /= t.sum(1, keepdims=True)
    if sinkhorn:
        q = t.T.copy()
        k, b = q.shape
        q /= q.sum()
        for _ in range(3):
            q /= q.sum(1, keepdims=True)
            q /= k
            q /= q.sum(0, keepdims=True)
            q /= b
        t = (q * b).T
    t = np.concatenate([t] * (len(anchors) // len(targets)))
    ploss = np.mean(np.sum(np.log(probs ** (-t)), axis=1))
    avg = probs.mean(0)
    if prior is None:
        rloss = -np.sum(np.log(avg ** (-avg))) + math.log(len(avg))
    else:
        rloss = np.sum(avg * np.log(avg / np.asarray(prior, np.float64)))
    return ploss + weight * rloss, ploss, rloss


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(3 * 8, 5)).astype(np.float32),
            rng.normal(size=(8, 5)).astype(np.float32),
            rng.normal(size=(6, 5)).astype(np.float32))  # fmt: skip


def test_msn_loss_matches_the_authors_code(arrays):
    anchors, targets, protos = arrays
    loss = jax.jit(lambda a, t, p: msn_loss(a, t, p))
    value, terms = loss(anchors, targets, protos)
    want, ploss, rloss = msn_reference(anchors, targets, protos)
    np.testing.assert_allclose(value, want, rtol=1e-5)
    np.testing.assert_allclose(terms["prediction"], ploss, rtol=1e-5)
    np.testing.assert_allclose(terms["regularization"], rloss, rtol=1e-4, atol=1e-7)
    no_sk, _ = jax.jit(
        lambda a, t, p: msn_loss(a, t, p, use_sinkhorn=False, regularization_weight=0.5)
    )(anchors, targets, protos)
    np.testing.assert_allclose(
        no_sk, msn_reference(anchors, targets, protos, sinkhorn=False, weight=0.5)[0], rtol=1e-5
    )
    assert abs(float(no_sk) - float(value)) > 1e-3  # Sinkhorn does change the targets


def test_pmsn_prior_and_its_kl(arrays):
    anchors, targets, protos = arrays
    prior = power_law_prior(6, 0.25)
    k = np.arange(1, 7) ** -0.25
    np.testing.assert_allclose(prior, k / k.sum(), rtol=1e-6)
    np.testing.assert_allclose(power_law_prior(6, 0.0), np.full(6, 1 / 6), rtol=1e-6)
    loss = jax.jit(lambda a, t, p, prior: msn_loss(a, t, p, prior=prior)[0])
    value = loss(anchors, targets, protos, prior)
    np.testing.assert_allclose(
        value, msn_reference(anchors, targets, protos, prior=prior)[0], rtol=1e-5
    )
    # The uniform prior's KL is MSN's me-max term exactly.
    uniform = loss(anchors, targets, protos, power_law_prior(6, 0.0))
    np.testing.assert_allclose(uniform, jax.jit(msn_loss)(anchors, targets, protos)[0], rtol=1e-6)


def test_targets_get_no_gradient_and_anchors_and_prototypes_do(arrays):
    anchors, targets, protos = arrays
    ga, gt, gp = jax.jit(jax.grad(lambda a, t, p: msn_loss(a, t, p)[0], argnums=(0, 1, 2)))(
        anchors, targets, protos
    )
    assert bool(jnp.all(gt == 0))
    assert float(jnp.abs(ga).max()) > 0 and float(jnp.abs(gp).max()) > 0
    with pytest.raises(ValueError, match="anchors \\(V \\* N, D\\)"):
        msn_loss(anchors[:5], targets, protos)
