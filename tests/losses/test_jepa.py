"""I-JEPA's loss against NumPy float64 transcriptions of the authors' code (smooth L1) and of
the paper's eq. 1 (L2); LeJEPA's Epps-Pulley statistic, SIGReg and objective against the
paper's integral (complex ECF, ``np.trapezoid``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ssl_jax.losses import epps_pulley, ijepa_loss, lejepa_loss, sigreg


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


def epps_pulley_reference(x, t_max=5.0, num_points=17):
    """Epps-Pulley per column in float64: ``N ∫ |φ̂(t) - e^{-t²/2}|² e^{-t²/2} dt``, the ECF as
    complex exponentials, ``np.trapezoid`` on ``linspace(-t_max, t_max, num_points)``."""
    x = np.asarray(x, np.float64)
    t = np.linspace(-t_max, t_max, num_points)
    ecf = np.exp(1j * x[:, :, None] * t).mean(axis=0)  # (M, T)
    integrand = np.abs(ecf - np.exp(-(t**2) / 2)) ** 2 * np.exp(-(t**2) / 2)
    return x.shape[0] * np.trapezoid(integrand, t, axis=-1)


def lejepa_reference(global_z, all_z, directions, lamb):
    """``(1 - λ) mean (c - z)² + λ mean_v mean_m EP(a_mᵀ z_v)``, NumPy float64."""
    g, a = np.asarray(global_z, np.float64), np.asarray(all_z, np.float64)
    pred = np.mean((g.mean(0)[None] - a) ** 2)
    reg = np.mean([epps_pulley_reference(view @ directions).mean() for view in a])
    return (1 - lamb) * pred + lamb * reg, pred, reg


def test_epps_pulley_matches_the_integral_and_tells_gaussians_apart():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(512, 3)).astype(np.float32)
    ep = jax.jit(epps_pulley, static_argnames=("t_max", "num_points"))
    np.testing.assert_allclose(ep(x), epps_pulley_reference(x), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        ep(x, t_max=3.0, num_points=33),
        epps_pulley_reference(x, 3.0, 33),
        rtol=1e-4,
        atol=1e-6,
    )
    # Standard normal samples score low; shifted, scaled or uniform ones score high.
    for other in (x + 1.0, 3.0 * x, rng.uniform(-1, 1, size=(512, 3))):
        assert float(ep(other).min()) > 5 * float(ep(x).max())


def test_sigreg_and_lejepa_loss_match_numpy():
    rng = np.random.default_rng(4)
    all_z = rng.normal(size=(4, 32, 6)).astype(np.float32) * 1.5 + 0.3
    key = jax.random.key(9)
    directions = np.asarray(jax.random.normal(key, (6, 16)), np.float64)
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    want = np.mean(epps_pulley_reference(all_z[0] @ directions))
    got = jax.jit(lambda z: sigreg(z, key, num_slices=16))(all_z[0])
    np.testing.assert_allclose(got, want, rtol=1e-4)
    value, terms = jax.jit(lambda g, a: lejepa_loss(g, a, key, lamb=0.2, num_slices=16))(
        all_z[:2], all_z
    )
    ref, pred, reg = lejepa_reference(all_z[:2], all_z, directions, 0.2)
    np.testing.assert_allclose(value, ref, rtol=1e-4)
    np.testing.assert_allclose(terms["prediction"], pred, rtol=1e-5)
    np.testing.assert_allclose(terms["sigreg"], reg, rtol=1e-4)
    # The centers are the global views' mean, not every view's: a wrong wiring differs.
    assert abs(np.mean((all_z.mean(0)[None] - all_z) ** 2) - pred) > 1e-3
    # Gradients reach every view, the centers' too (no stop-gradient in LeJEPA).
    grads = jax.jit(jax.grad(lambda a: lejepa_loss(a[:2], a, key, num_slices=16)[0]))(all_z)
    assert all(float(jnp.abs(grads[v]).max()) > 0 for v in range(4))
    with pytest.raises(ValueError, match="lambda must lie in"):
        lejepa_loss(all_z[:2], all_z, key, lamb=1.5)
