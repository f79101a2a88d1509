"""Weighted k-nearest-neighbour classification on frozen features.

The InstDisc/DINO protocol (Wu et al. 2018, Caron et al. 2021): features are
L2-normalised, similarity is the cosine, and each of the k nearest training examples
votes for its class with weight ``exp(similarity / T)``.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ssl_jax.losses import l2_normalize


@partial(jax.jit, static_argnames=("k", "num_classes"))
def knn_scores(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    *,
    k: int,
    temperature: float,
    num_classes: int,
) -> jax.Array:
    """Class scores ``(M, num_classes)``: ``sum over the k nearest of exp(cos/T) * onehot``."""
    train = l2_normalize(jnp.asarray(train_features, jnp.float32))
    test = l2_normalize(jnp.asarray(test_features, jnp.float32))
    sims, idx = jax.lax.top_k(test @ train.T, k)
    weights = jnp.exp(sims / temperature)
    votes = jax.nn.one_hot(jnp.asarray(train_labels)[idx], num_classes) * weights[..., None]
    return votes.sum(axis=1)


def knn_accuracy(
    train_features,
    train_labels,
    test_features,
    test_labels,
    *,
    k: int,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk: int = 1024,
) -> dict:
    """Top-1 and top-5 accuracy (in %) of the weighted kNN classifier, in test chunks."""
    if len(train_features) < k:
        raise ValueError(f"k={k} exceeds the {len(train_features)} training examples.")
    train_labels = np.asarray(train_labels)
    test_labels = np.asarray(test_labels)
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    top1 = top5 = 0
    for start in range(0, len(test_features), chunk):
        scores = knn_scores(
            train_features,
            train_labels,
            test_features[start : start + chunk],
            k=k,
            temperature=temperature,
            num_classes=num_classes,
        )
        ranked = np.argsort(-np.asarray(scores), axis=1, kind="stable")
        y = test_labels[start : start + chunk, None]
        top1 += int(np.sum(ranked[:, :1] == y))
        top5 += int(np.sum(np.any(ranked[:, :5] == y, axis=1)))
    n = len(test_features)
    return {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n}


def knn_accuracies(train: tuple, test: tuple, *, ks, temperature: float, num_classes: int) -> dict:
    """``{"top1_k{k}", "top5_k{k}"}`` for each k; ``train``/``test`` are (features, labels).

    A k larger than the training set is an error (:func:`check_ks`).
    """
    check_ks(ks, len(train[0]))
    out = {}
    for k in ks:
        acc = knn_accuracy(
            *train,
            *test,
            k=k,
            temperature=temperature,
            num_classes=num_classes,
        )
        out[f"top1_k{k}"], out[f"top5_k{k}"] = acc["top1"], acc["top5"]
    return out


def check_ks(ks, num_train: int, where: str = "knn.k") -> None:
    """Every k at most the ``num_train`` images of the memory bank; a ``ValueError`` naming
    the k values and the fix otherwise."""
    too_large = [int(k) for k in ks if int(k) > num_train]
    if too_large or any(int(k) < 1 for k in ks):
        raise ValueError(
            f"{where}={tuple(ks)}: kNN needs 1 <= k <= {num_train}, the number of training "
            f"images (the memory bank); {too_large or 'k < 1'} cannot be evaluated: set "
            f"{where} to values in that range."
        )
