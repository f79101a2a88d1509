"""Both logistic-regression solvers against scikit-learn and a NumPy objective."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ssl_jax.evaluators.logreg import (
    logistic_regression,
    logistic_regression_logits,
    logistic_regression_steps,
)

# --- L-BFGS to convergence (the offline linear probe) ----------------------------------------


def separable_classes(seed, n=90, dim=5, num_classes=3):
    """A tiny problem whose classes a linear map separates (centres 6 apart, unit noise)."""
    rng = np.random.default_rng(seed)
    centers = 3.0 * rng.normal(size=(num_classes, dim))
    y = np.arange(n) % num_classes
    return (centers[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def objective_and_gradient(x, y, w, b, l2):
    """NumPy float64 reference: ``J = mean CE + l2 / 2 ||W||^2`` and its gradient norm."""
    x, w, b = (np.asarray(a, np.float64) for a in (x, w, b))
    logits = x @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ce = -np.log(p[np.arange(len(y)), y]).mean()
    residual = (p - np.eye(w.shape[1])[y]) / len(y)
    grad_w, grad_b = x.T @ residual + l2 * w, residual.sum(axis=0)
    return ce + 0.5 * l2 * np.sum(w**2), np.sqrt(np.sum(grad_w**2) + np.sum(grad_b**2))


@pytest.mark.parametrize("l2", [1e-1, 1e-2])
def test_logistic_regression_equals_sklearn_with_c_one_over_l2_n(l2):
    """(Weaker L2 makes the problem ill-conditioned: float32 gradients then stall above
    tol=1e-6, and the coefficients agree only to ~1e-3.)"""
    from sklearn.linear_model import LogisticRegression

    x, y = separable_classes(0)
    params, info = logistic_regression(x, y, num_classes=3, l2=l2, tol=1e-6)
    ref = LogisticRegression(C=1.0 / (l2 * len(x)), tol=1e-10, max_iter=10_000)
    ref.fit(x.astype(np.float64), y)
    scale = max(np.abs(ref.coef_).max(), np.abs(ref.intercept_).max())
    np.testing.assert_allclose(params["w"], ref.coef_.T, atol=1e-4 * scale)
    np.testing.assert_allclose(params["b"], ref.intercept_, atol=1e-4 * scale)
    np.testing.assert_array_equal(np.argmax(x @ params["w"] + params["b"], 1), ref.predict(x))
    assert info["grad_norm"] < 1e-6 and info["iterations"] < 100 and info["converged"]


def test_logistic_regression_stops_at_a_stationary_point_of_the_numpy_objective():
    x, y = separable_classes(1)
    params, info = logistic_regression(x, y, num_classes=3, l2=0.05, tol=1e-6)
    value, grad_norm = objective_and_gradient(x, y, params["w"], params["b"], 0.05)
    assert grad_norm < 1e-5
    assert info["train_loss"] == pytest.approx(value - 0.025 * np.sum(params["w"] ** 2.0), 1e-5)
    # A step along any direction raises J: the solver found the minimum, not a plateau.
    rng = np.random.default_rng(0)
    for _ in range(3):
        dw, db = 1e-2 * rng.normal(size=params["w"].shape), 1e-2 * rng.normal(size=3)
        moved, _ = objective_and_gradient(x, y, params["w"] + dw, params["b"] + db, 0.05)
        assert moved > value


def test_zero_weights_leave_examples_out():
    """Weights 0/1 equal a fit on the kept rows: sklearn's C = 1 / (l2 * kept) on them."""
    from sklearn.linear_model import LogisticRegression

    x, y = separable_classes(2)
    keep = np.arange(len(x)) % 4 != 0
    x[~keep] = 100.0  # far outliers: they would dominate a fit that saw them
    params, _ = logistic_regression(x, y, num_classes=3, l2=1e-2, weights=keep, tol=1e-6)
    ref = LogisticRegression(C=1.0 / (1e-2 * keep.sum()), tol=1e-10, max_iter=10_000)
    ref.fit(x[keep].astype(np.float64), y[keep])
    np.testing.assert_allclose(params["w"], ref.coef_.T, atol=1e-4 * np.abs(ref.coef_).max())


# --- Nesterov for a bounded number of steps (few-shot episodes) ------------------------------


@pytest.mark.parametrize("dim", [64, 8], ids=["dual", "primal"])  # n = 40 support features
def test_logistic_regression_matches_scikit_learn(dim):
    """Tian et al.'s classifier: scikit-learn's C=1 multinomial logistic regression, here in
    float64 to convergence; logits agree up to a per-query constant (softmax's gauge)."""
    rng = np.random.default_rng(dim)
    labels = np.repeat(np.arange(4), 10)
    x = rng.normal(size=(4, dim))[labels] + 1.5 * rng.normal(size=(40, dim))
    q = rng.normal(size=(30, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    reference = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(x, labels)
    expected = reference.decision_function(q)
    got = np.asarray(logistic_regression_logits(x, labels, q, num_classes=4, c=1.0))
    centred = lambda a: a - a.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(centred(got), centred(expected), atol=1e-3)
    # A looser tolerance takes fewer steps and is further from the optimum.
    rough = np.asarray(logistic_regression_logits(x, labels, q, num_classes=4, tol=0.5))
    assert np.abs(centred(rough) - centred(expected)).max() > 1e-3


def test_logistic_regression_steps_follow_the_bound():
    assert logistic_regression_steps(5, 1.0, 1e-4) == 18
    assert logistic_regression_steps(250, 1.0, 1e-4) == 104
    with pytest.raises(ValueError, match="tol must be in"):
        logistic_regression_steps(5, 1.0, 1.5)
