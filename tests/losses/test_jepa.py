"""I-JEPA's loss against NumPy float64 transcriptions of the authors' code (smooth L1) and of
the paper's eq. 1 (L2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax.losses import ijepa_loss


def smooth_l1_reference(pred, target, beta=1.0):
    """``torch.nn.functional.smooth_l1_loss(pred, target, beta=beta)`` (mean reduction)."""
    d = np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64))
    return np.mean(np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta))


def paper_l2_reference(pred, target):
    """Eq. 1: ``(1/M) Σ_i Σ_{j ∈ B_i} ||ŝ_j - s_j||²``, averaged over the images."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    n, m = pred.shape[:2]
    total = 0.0
    for image in range(n):
        for block in range(m):
            for j in range(pred.shape[2]):
                total += np.sum((pred[image, block, j] - target[image, block, j]) ** 2) / m
    return total / n


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    target = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    return pred, target


def test_smooth_l1_and_l2_match_their_references(arrays):
    pred, target = arrays
    loss = jax.jit(ijepa_loss, static_argnames=("kind", "beta"))
    np.testing.assert_allclose(loss(pred, target), smooth_l1_reference(pred, target), rtol=1e-6)
    np.testing.assert_allclose(
        loss(pred, target, beta=0.5), smooth_l1_reference(pred, target, 0.5), rtol=1e-6
    )
    np.testing.assert_allclose(
        loss(pred, target, kind="l2"), paper_l2_reference(pred, target), rtol=1e-6
    )
    # Both regimes of smooth L1 occur in these numbers (|d| above and below beta).
    d = np.abs(pred - target)
    assert (d < 1).any() and (d > 1).any()


def test_gradients_and_invariances(arrays):
    pred, target = (jnp.asarray(a[:1, :2, :2, :3]) for a in arrays)
    for kind in ("smooth_l1", "l2"):  # float32 finite differences: loose tolerances
        check_grads(lambda p, kind=kind: ijepa_loss(p, target, kind=kind), (pred,), order=1,
                    modes=("rev",), eps=1e-2, atol=1e-2, rtol=1e-2)  # fmt: skip
    pred, target = arrays
    perm = np.random.default_rng(1).permutation(3)
    for kind in ("smooth_l1", "l2"):
        np.testing.assert_allclose(
            ijepa_loss(pred[perm], target[perm], kind=kind),
            ijepa_loss(pred, target, kind=kind),
            rtol=1e-6,
        )
        assert float(ijepa_loss(target, target, kind=kind)) == 0.0


def test_errors_say_what_is_wrong(arrays):
    pred, target = arrays
    with pytest.raises(ValueError, match="one shape"):
        ijepa_loss(pred, target[:, :2])
    with pytest.raises(ValueError, match="valid: \\['smooth_l1', 'l2'\\]"):
        ijepa_loss(pred, target, kind="l1")
