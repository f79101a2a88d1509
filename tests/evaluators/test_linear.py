import numpy as np
import pytest

from ssl_jax.evaluators.linear import (
    linear_probe,
    logistic_regression,
    offline_linear_probe,
    topk_accuracy,
)

PROBE = dict(num_classes=4, epochs=20, batch_size=64, learning_rate=1e-2)


def gaussian_classes(seed, separation, n_train=256, n_test=128, dim=16, num_classes=4):
    rng = np.random.default_rng(seed)
    centers = separation * rng.normal(size=(num_classes, dim))
    train_y = rng.integers(num_classes, size=n_train)
    test_y = rng.integers(num_classes, size=n_test)
    train_x = centers[train_y] + rng.normal(size=(n_train, dim)) + 3.0
    test_x = centers[test_y] + rng.normal(size=(n_test, dim)) + 3.0
    return train_x.astype(np.float32), train_y, test_x.astype(np.float32), test_y


def test_topk_accuracy_hand_cases():
    logits = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5], [0.0, 0.1, 0.2]])
    labels = np.array([2, 0, 0, 2])
    acc = topk_accuracy(logits, labels, ks=(1, 2, 3))
    assert acc == pytest.approx({"top1": 50.0, "top2": 75.0, "top3": 100.0})


def test_topk_accuracy_ties_go_to_lower_index():
    logits = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    assert topk_accuracy(logits, np.array([0, 1]), ks=(1,)) == {"top1": 50.0}


def test_separable_data_is_learned():
    result = linear_probe(*gaussian_classes(0, separation=3.0), **PROBE)
    assert result["top1"] >= 99.0
    assert result["top5"] == 100.0
    assert result["train_top1"] >= 99.0
    assert result["final_train_loss"] < 0.3


def test_random_labels_stay_near_chance():
    train_x, train_y, test_x, test_y = gaussian_classes(1, separation=0.0)
    result = linear_probe(train_x, train_y, test_x, test_y, **PROBE)
    assert 10.0 <= result["top1"] <= 40.0  # chance is 25%
    assert result["final_train_loss"] > 0.8


def test_same_seed_same_result():
    data = gaussian_classes(2, separation=0.5)
    a = linear_probe(*data, seed=3, **PROBE)
    b = linear_probe(*data, seed=3, **PROBE)
    c = linear_probe(*data, seed=4, **PROBE)
    assert a == b
    assert c["final_train_loss"] != a["final_train_loss"]


# --- The offline protocol: L-BFGS logistic regression, L2 chosen on a validation split -------


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


def sweep_problem(seed=3):
    """Overlapping Gaussian classes (the shapes of ``separable_classes``: one compilation):
    the L2 strength changes the validation accuracy."""
    train_x, train_y, test_x, test_y = gaussian_classes(
        seed, separation=0.6, n_train=90, n_test=90, dim=5, num_classes=3
    )
    return train_x, train_y, test_x, test_y, np.arange(0, 90, 3)


GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def test_offline_probe_chooses_the_best_validation_l2_and_refits_on_all_of_train():
    train_x, train_y, test_x, test_y, val = sweep_problem()
    out = offline_linear_probe(
        train_x, train_y, test_x, test_y, num_classes=3, val_indices=val, l2_grid=GRID
    )
    sweep = out["l2_sweep"]
    assert [row["l2"] for row in sweep] == sorted(GRID, reverse=True)
    best = max(row["val_top1"] for row in sweep)
    assert out["val_top1"] == best and out["l2"] == max(
        row["l2"] for row in sweep if row["val_top1"] == best
    )
    assert len({row["val_top1"] for row in sweep}) > 1  # the choice is not a tie of all
    # Each grid point's validation accuracy is a fit on the rest of train alone.
    fit = np.setdiff1d(np.arange(len(train_x)), val)
    mean, std = train_x[fit].mean(0), train_x[fit].std(0) + 1e-6
    row = sweep[2]
    weights = np.isin(np.arange(len(train_x)), fit)  # = train_x[fit] (tested above), 1 compile
    params, _ = logistic_regression(
        (train_x - mean) / std, train_y, num_classes=3, l2=row["l2"], weights=weights
    )
    val_top1 = topk_accuracy(
        ((train_x[val] - mean) / std) @ params["w"] + params["b"], train_y[val]
    )
    assert row["val_top1"] == pytest.approx(val_top1["top1"], abs=100 / len(val) + 1e-9)
    # The reported model is the refit on all of train with the chosen l2.
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    params, _ = logistic_regression((train_x - mean) / std, train_y, num_classes=3, l2=out["l2"])
    test = topk_accuracy(((test_x - mean) / std) @ params["w"] + params["b"], test_y)
    assert out["top1"] == pytest.approx(test["top1"], abs=100 / len(test_y) + 1e-9)
    assert out["num_val"] == len(val)


def test_offline_probe_never_looks_at_the_test_split_to_choose_l2():
    train_x, train_y, test_x, test_y, val = sweep_problem()
    kw = dict(num_classes=3, val_indices=val, l2_grid=GRID)
    honest = offline_linear_probe(train_x, train_y, test_x, test_y, **kw)
    relabelled = offline_linear_probe(train_x, train_y, test_x, (test_y + 1) % 3, **kw)
    other_images = offline_linear_probe(train_x, train_y, test_x[::-1] * 3.0, test_y, **kw)
    for out in (relabelled, other_images):
        assert out["l2"] == honest["l2"] and out["l2_sweep"] == honest["l2_sweep"]
    assert relabelled["top1"] < honest["top1"]


def test_offline_probe_with_one_l2_needs_no_validation_and_an_empty_one_is_an_error():
    train_x, train_y, test_x, test_y, val = sweep_problem()
    one = offline_linear_probe(
        train_x, train_y, test_x, test_y, num_classes=3, val_indices=[], l2_grid=(0.1,)
    )
    assert one["l2"] == 0.1 and one["l2_sweep"] == [] and one["val_top1"] is None
    with pytest.raises(ValueError, match="val_fraction"):
        offline_linear_probe(
            train_x, train_y, test_x, test_y, num_classes=3, val_indices=[], l2_grid=GRID
        )
    with pytest.raises(ValueError, match="positive"):
        offline_linear_probe(
            train_x, train_y, test_x, test_y, num_classes=3, val_indices=val, l2_grid=(0.0, 1.0)
        )
