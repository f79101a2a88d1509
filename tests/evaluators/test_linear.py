import numpy as np
import pytest

from ssl_jax.evaluators.linear import offline_linear_probe
from ssl_jax.evaluators.logreg import logistic_regression
from ssl_jax.metrics import topk_accuracy


def gaussian_classes(seed, separation, n_train=256, n_test=128, dim=16, num_classes=4):
    rng = np.random.default_rng(seed)
    centers = separation * rng.normal(size=(num_classes, dim))
    train_y = rng.integers(num_classes, size=n_train)
    test_y = rng.integers(num_classes, size=n_test)
    train_x = centers[train_y] + rng.normal(size=(n_train, dim)) + 3.0
    test_x = centers[test_y] + rng.normal(size=(n_test, dim)) + 3.0
    return train_x.astype(np.float32), train_y, test_x.astype(np.float32), test_y


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
