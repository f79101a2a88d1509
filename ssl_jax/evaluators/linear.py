"""Multinomial logistic regression on frozen features (the linear-probe classifier)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax


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
