"""Multinomial logistic regression on frozen features: the solvers of the probes.

Both solvers minimise the L2-regularised multinomial cross-entropy with an unpenalised bias,

    J(W, b) = sum_i w_i CE(x_i W + b, y_i) / sum_i w_i + l2 / 2 * ||W||_F^2,

over ``W (D, C)`` and ``b (C,)``: scikit-learn's ``LogisticRegression(C=1 / (l2 N))`` for unit
weights (its ``C * sum_i CE + ||W||^2 / 2`` divided by ``C * N``). They differ in how:

- :func:`logistic_regression` (the offline linear probe, :mod:`ssl_jax.evaluators.linear`):
  full-batch L-BFGS to a gradient-norm tolerance, per-example weights, a warm start; one fit
  at a time, on one device.
- :func:`logistic_regression_logits` (few-shot episodes, :mod:`ssl_jax.evaluators.few_shot`):
  Nesterov's accelerated gradient for a number of steps fixed by its convergence bound
  (:func:`logistic_regression_steps`), written as matrix products only, so it is jitted and
  vmapped over batches of small episodes. It takes scikit-learn's ``C`` (``l2 = 1 / (n C)``).
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike


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


def logistic_regression_steps(n: int, c: float = 1.0, tol: float = 1e-4) -> int:
    """Steps :func:`logistic_regression_logits` takes for ``n`` support features:
    ``ceil(sqrt(kappa) * ln(1 / tol))``, ``kappa = 1 + n c / 2`` the condition number bound
    for unit-norm features, so that Nesterov's bound ``(1 - 1 / sqrt(kappa)) ** steps`` on
    the remaining suboptimality is below ``tol``: 18 steps for 5-way 1-shot, 104 for 10-way
    25-shot (``tol=1e-4``)."""
    if not 0 < tol < 1:
        raise ValueError(f"logistic regression tol must be in (0, 1), got {tol}.")
    if not c > 0:
        raise ValueError(f"logistic regression C must be positive, got {c}.")
    return math.ceil(math.sqrt(1.0 + n * c / 2.0) * math.log(1.0 / tol))


def logistic_regression_logits(
    support: ArrayLike,
    labels: ArrayLike,
    query: ArrayLike,
    *,
    num_classes: int,
    c: float = 1.0,
    tol: float = 1e-4,
) -> jax.Array:
    """Logits ``(M, num_classes)`` of queries ``(M, D)`` under a multinomial logistic
    regression fitted on ``support`` ``(n, D)`` (unit-norm rows) with int ``labels``.

    The objective is scikit-learn's ``LogisticRegression(C=c)``: ``sum_i CE(W^T x_i + b,
    y_i) + ||W||^2 / (2 c)``, the bias unpenalised. Features are centred on the support
    mean first (``W^T (x - m) + b'`` is the same model and penalty, so the same optimum),
    which decouples ``W`` from ``b`` in Böhning's bound of the Hessian (the softmax Hessian
    is at most 1/2): divided by ``n``, the objective's gradient is ``L``-Lipschitz in ``W``
    with ``L = mean ||x - m||^2 / 2 + mu``, ``mu = 1 / (n c)``, and 1/2-Lipschitz in ``b``.
    It is minimised from zero by Nesterov's method with steps ``1 / L`` (``W``) and ``2``
    (``b``), momentum ``(sqrt(kappa) - 1) / (sqrt(kappa) + 1)``, ``kappa = L / mu``, for
    :func:`logistic_regression_steps` ``(n, c, tol)`` steps. When ``n < D`` the same
    iterates run in the span of the support (``W = X^T A``: every gradient lies in it), at
    ``n^2`` instead of ``n D`` per step and class. Only matrix products: XLA's CPU
    factorisations and triangular solves are slow for batches of small matrices.
    """
    x = jnp.asarray(support, jnp.float32)
    q = jnp.asarray(query, jnp.float32)
    n, dim = x.shape
    steps = logistic_regression_steps(n, c, tol)
    y = jax.nn.one_hot(jnp.asarray(labels), num_classes, dtype=jnp.float32)
    mean = jnp.mean(x, axis=0)
    x, q = x - mean, q - mean
    mu = 1.0 / (n * c)
    lipschitz = jnp.mean(jnp.sum(x * x, axis=1)) / 2.0 + mu
    root = jnp.sqrt(lipschitz / mu)
    momentum = (root - 1.0) / (root + 1.0)
    dual = n < dim
    design, query_design = (x @ x.T, q @ x.T) if dual else (x, q)

    def descend(params):
        w, b = params
        residual = (jax.nn.softmax(design @ w + b) - y) / n
        grad_w = residual if dual else x.T @ residual  # dual: W = X^T A, X^T (R + mu A)
        return w - (grad_w + mu * w) / lipschitz, b - 2.0 * jnp.sum(residual, axis=0)

    def step(_, carry):
        params, previous = carry
        look = jax.tree.map(lambda p, o: p + momentum * (p - o), params, previous)
        return descend(look), params

    zero = (jnp.zeros((design.shape[1], num_classes)), jnp.zeros((num_classes,)))
    (w, b), _ = jax.lax.fori_loop(0, steps, step, (zero, zero))
    return query_design @ w + b
