"""Multinomial logistic regression on frozen features (the linear-probe classifier)."""

import logging
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

log = logging.getLogger(__name__)


def _standardizer(train_x: np.ndarray):
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0) + 1e-6
    return lambda x: (x - mean) / std


@partial(jax.jit, static_argnames=("num_classes", "epochs", "batch_size"))
def _fit(x, y, key, *, num_classes, epochs, batch_size, learning_rate, weight_decay):
    n, d = x.shape
    steps_per_epoch = max(n // batch_size, 1)
    schedule = optax.cosine_decay_schedule(learning_rate, epochs * steps_per_epoch)
    tx = optax.adamw(schedule, weight_decay=weight_decay)
    params = {"w": jnp.zeros((d, num_classes)), "b": jnp.zeros((num_classes,))}

    def loss_fn(p, xb, yb):
        logits = xb @ p["w"] + p["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def step(carry, idx):
        p, opt = carry
        loss, g = jax.value_and_grad(loss_fn)(p, x[idx], y[idx])
        updates, opt = tx.update(g, opt, p)
        return (optax.apply_updates(p, updates), opt), loss

    def epoch(carry, k):
        perm = jax.random.permutation(k, n)[: steps_per_epoch * batch_size]
        carry, losses = jax.lax.scan(step, carry, perm.reshape(steps_per_epoch, -1))
        return carry, losses.mean()

    (params, _), losses = jax.lax.scan(
        epoch, (params, tx.init(params)), jax.random.split(key, epochs)
    )
    return params, losses


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict:
    """Top-k accuracies in percent."""
    ranked = np.argsort(-logits, axis=1, kind="stable")
    return {
        f"top{k}": 100.0 * float(np.mean(np.any(ranked[:, :k] == labels[:, None], axis=1)))
        for k in ks
    }


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    num_classes: int,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> dict:
    """Train softmax regression on standardised train features, report train/test top-1/5.

    Features are standardised with the training set's per-dimension mean and std, then
    AdamW with a cosine schedule minimises the cross entropy over shuffled minibatches.
    """
    scale = _standardizer(train_x)
    xtr, xte = scale(train_x), scale(test_x)
    params, losses = _fit(
        jnp.asarray(xtr),
        jnp.asarray(train_y),
        jax.random.key(seed),
        num_classes=num_classes,
        epochs=epochs,
        batch_size=min(batch_size, len(xtr)),
        learning_rate=learning_rate,
        weight_decay=weight_decay,
    )
    w, b = np.asarray(params["w"]), np.asarray(params["b"])
    train_acc = topk_accuracy(xtr @ w + b, train_y)
    test_acc = topk_accuracy(xte @ w + b, test_y)
    return {
        **test_acc,
        "train_top1": train_acc["top1"],
        "final_train_loss": float(losses[-1]),
    }


# --- Multinomial logistic regression by L-BFGS, L2 chosen on a validation split ---------------


def _objective(params, x, y, weights, l2):
    """``(J, mean CE)``: the weighted mean cross-entropy plus ``l2 / 2 * ||W||^2``."""
    logits = jnp.dot(x, params["w"], precision=jax.lax.Precision.HIGHEST) + params["b"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    ce = jnp.sum(weights * ce) / jnp.sum(weights)
    return ce + 0.5 * l2 * jnp.sum(params["w"] ** 2), ce


@partial(jax.jit, static_argnames=("max_iter",))
def _lbfgs(x, y, weights, l2, init, tol, *, max_iter):
    def value_fn(params):
        return _objective(params, x, y, weights, l2)[0]

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(value_fn)

    def step(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = solver.update(
            grad, state, params, value=value, grad=grad, value_fn=value_fn
        )
        return optax.apply_updates(params, updates), state

    def running(carry):
        _, state = carry
        count = optax.tree_utils.tree_get(state, "count")
        grad_norm = optax.tree_utils.tree_norm(optax.tree_utils.tree_get(state, "grad"))
        return (count == 0) | ((count < max_iter) & (grad_norm >= tol))

    params, state = jax.lax.while_loop(running, step, (init, solver.init(init)))
    info = {
        "train_loss": _objective(params, x, y, weights, l2)[1],
        "iterations": optax.tree_utils.tree_get(state, "count"),
        "grad_norm": optax.tree_utils.tree_norm(jax.grad(value_fn)(params)),
    }
    return params, info


def logistic_regression(
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int,
    l2: float,
    weights: np.ndarray | None = None,
    max_iter: int = 1000,
    tol: float = 1e-5,
    init: dict | None = None,
) -> tuple[dict, dict]:
    """L2-regularised multinomial logistic regression, solved to convergence by L-BFGS.

    Minimises ``J(W, b) = sum_i w_i CE(x_i W + b, y_i) / sum_i w_i + l2 / 2 * ||W||_F^2``
    over ``W (D, C)`` and ``b (C,)`` (the bias is not penalised; ``weights`` ``w_i`` default
    to 1, and 0 leaves an example out without changing the shapes, so one compilation serves
    every subset) with full-batch :func:`optax.lbfgs` (zoom line search) from ``init`` (zeros
    by default), until the gradient norm of ``J`` is below ``tol`` or after ``max_iter``
    iterations. With unit weights this is scikit-learn's ``LogisticRegression(C=1 / (l2 * N))``
    (its ``C * sum_i CE + ||W||^2 / 2`` divided by ``C * N``). Float32, on one device.

    Returns ``({"w", "b"}`` as NumPy, ``{"train_loss": mean CE, "iterations", "grad_norm",
    "converged": iterations < max_iter})``.
    """
    x = jnp.asarray(x, jnp.float32)
    weights = np.ones(len(x), np.float32) if weights is None else weights
    if init is None:
        init = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}
    params, info = _lbfgs(
        x,
        jnp.asarray(y, jnp.int32),
        jnp.asarray(weights, jnp.float32),
        jnp.float32(l2),
        jax.tree.map(jnp.asarray, init),
        jnp.float32(tol),
        max_iter=int(max_iter),
    )
    info = {k: v.item() for k, v in info.items()}
    info["converged"] = info["iterations"] < max_iter
    return jax.tree.map(np.asarray, params), info


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
       from the previous solution), fit :func:`logistic_regression` on the rest and measure
       the validation top-1.
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
