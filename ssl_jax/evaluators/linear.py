"""The offline linear probe: logistic regression on frozen features, L2 chosen on validation.

The solver is :func:`ssl_jax.evaluators.logreg.logistic_regression` (L-BFGS).
"""

import logging

import numpy as np

from ssl_jax.evaluators.logreg import logistic_regression
from ssl_jax.metrics import topk_accuracy

log = logging.getLogger(__name__)


def _standardizer(train_x: np.ndarray):
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0) + 1e-6
    return lambda x: (x - mean) / std


def _logits(params: dict, x: np.ndarray) -> np.ndarray:
    return x @ params["w"] + params["b"]


def offline_linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    num_classes: int,
    val_indices: np.ndarray,
    l2_grid,
    max_iter: int = 1000,
    tol: float = 1e-5,
) -> dict:
    """Linear evaluation on frozen features as Kornblith et al. (2019) and SimCLR (B.8) do it.

    1. Hold out ``val_indices`` of the training features; standardise with the mean and std
       of the rest; for each ``l2`` of ``l2_grid``, from the largest down (each fit starts
       from the previous solution), fit
       :func:`~ssl_jax.evaluators.logreg.logistic_regression` on the rest and measure the
       validation top-1.
    2. Choose the ``l2`` with the best validation top-1 (ties: the largest).
    3. Standardise with all training features, refit on all of them with that ``l2`` (from
       zeros) and report test top-1/top-5.

    The test features are read only in step 3, after the choice. A grid of one value skips
    steps 1-2 (``val_indices`` may then be empty). Returns the test accuracies, the chosen
    ``l2``, its ``val_top1``, the refit's ``train_top1``, ``final_train_loss`` (mean CE),
    ``iterations``, ``grad_norm`` and ``converged``, and ``l2_sweep``: per grid point ``l2``,
    ``val_top1``, ``train_loss``, ``iterations``, ``grad_norm``, ``converged``.
    """
    grid = sorted({float(v) for v in l2_grid}, reverse=True)
    if not grid or min(grid) <= 0:
        raise ValueError(f"probe.l2_grid must hold positive numbers, got {tuple(l2_grid)}.")
    val_indices = np.asarray(val_indices, np.int64)
    sweep = []
    if len(grid) > 1:
        if len(val_indices) == 0:
            raise ValueError(
                "The validation split for choosing the L2 strength is empty: raise "
                "data.val_fraction (or data.label_fraction), or give probe.l2_grid one value."
            )
        fit = np.ones(len(train_x), np.float32)
        fit[val_indices] = 0.0
        scale = _standardizer(train_x[fit > 0])
        x, val_y = scale(train_x), train_y[val_indices]
        params = None
        for l2 in grid:
            params, info = logistic_regression(
                x,
                train_y,
                num_classes=num_classes,
                l2=l2,
                weights=fit,
                max_iter=max_iter,
                tol=tol,
                init=params,
            )
            val_top1 = topk_accuracy(_logits(params, x[val_indices]), val_y, ks=(1,))["top1"]
            sweep.append({"l2": l2, "val_top1": val_top1, **info})
        best = max(sweep, key=lambda row: row["val_top1"])  # the first maximum: largest l2
        l2, val_top1 = best["l2"], best["val_top1"]
    else:
        l2, val_top1 = grid[0], None
    scale = _standardizer(train_x)
    xtr, xte = scale(train_x), scale(test_x)
    params, info = logistic_regression(
        xtr, train_y, num_classes=num_classes, l2=l2, max_iter=max_iter, tol=tol
    )
    if not info["converged"]:
        log.warning(
            "L-BFGS stopped at max_iter=%d with gradient norm %.2g > tol=%.2g (l2=%g): raise "
            "probe.max_iter for a fully converged fit.",
            max_iter,
            info["grad_norm"],
            tol,
            l2,
        )
    return {
        **topk_accuracy(_logits(params, xte), test_y),
        "train_top1": topk_accuracy(_logits(params, xtr), train_y, ks=(1,))["top1"],
        "final_train_loss": info["train_loss"],
        "l2": l2,
        "val_top1": val_top1,
        "num_val": len(val_indices) if sweep else 0,
        "iterations": info["iterations"],
        "grad_norm": info["grad_norm"],
        "converged": info["converged"],
        "l2_sweep": sweep,
    }
