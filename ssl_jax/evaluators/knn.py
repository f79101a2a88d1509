"""Weighted k-nearest-neighbour classification on frozen features.

The InstDisc/DINO protocol (Wu et al. 2018, Caron et al. 2021): features are
L2-normalised, similarity is the cosine, and each of the k nearest training examples
votes for its class with weight ``exp(similarity / T)``.

Two forms of the same classifier: on host arrays (:func:`knn_accuracy`, the memory bank on
one device), and on feature banks split over a mesh (:func:`bank_accuracies`, on
:class:`~ssl_jax.evaluators.features.FeatureBank`): each device finds the k nearest among
its own rows of the memory bank, the devices exchange those candidates only (k per query
and device), and the k nearest of them vote. No device holds the memory bank or a query's
similarities to all of it, which is what an ImageNet-size bank needs.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from ssl_jax.evaluators.features import FeatureBank
from ssl_jax.losses import l2_normalize
from ssl_jax.parallel import DATA_AXIS


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


def bank_accuracies(
    train: FeatureBank,
    test: FeatureBank,
    *,
    ks,
    temperature: float,
    num_classes: int,
    mesh: Mesh,
) -> dict:
    """:func:`knn_accuracies` of every test example against the memory bank ``train``, with
    both banks left split over ``mesh`` (see the module docstring); the same numbers."""
    check_ks(ks, train.count)
    ks = tuple(int(k) for k in ks)
    hits = np.zeros((len(ks), 2), np.int64)
    for i in range(test.features.shape[0]):
        counts = _bank_hits(
            train, test, jnp.asarray(i, jnp.int32), ks=ks, temperature=temperature,
            num_classes=num_classes, mesh=mesh,
        )  # fmt: skip
        hits += np.asarray(counts)
    n = test.count
    out = {}
    for (top1, top5), k in zip(hits, ks, strict=True):
        out[f"top1_k{k}"], out[f"top5_k{k}"] = 100.0 * top1 / n, 100.0 * top5 / n
    return out


@partial(jax.jit, static_argnames=("ks", "num_classes", "mesh"))
def _bank_hits(train, test, i, *, ks, temperature, num_classes, mesh):
    """``(len(ks), 2)`` counts of top-1 and top-5 hits of test batch ``i``."""
    queries = l2_normalize(test.features[i].astype(jnp.float32))
    labels, valid = test.labels[i], test.mask[i]
    kmax = max(ks)

    def nearest_here(features, bank_labels, bank_mask, queries):
        """This device's k nearest rows, then every device's, for every query."""
        features = l2_normalize(features.reshape(-1, features.shape[-1]))
        sims = jnp.where(bank_mask.reshape(-1), queries @ features.T, -jnp.inf)
        sims, index = jax.lax.top_k(sims, min(kmax, sims.shape[-1]))
        candidates = bank_labels.reshape(-1)[index]
        gather = partial(jax.lax.all_gather, axis_name=DATA_AXIS, axis=1, tiled=True)
        return gather(sims), gather(candidates)

    rows = P(None, DATA_AXIS)
    # check_vma=False: the all-gathered candidates are the same on every device (replicated
    # outputs), which JAX cannot infer from all_gather.
    sims, candidates = jax.shard_map(
        nearest_here,
        mesh=mesh,
        in_specs=(rows, rows, rows, P()),
        out_specs=(P(), P()),
        check_vma=False,
    )(train.features, train.labels, train.mask, queries)
    sims, order = jax.lax.top_k(sims, kmax)
    candidates = jnp.take_along_axis(candidates, order, axis=1)
    counts = []
    for k in ks:
        weights = jnp.exp(sims[:, :k] / temperature)
        scores = jnp.sum(jax.nn.one_hot(candidates[:, :k], num_classes) * weights[..., None], 1)
        _, ranked = jax.lax.top_k(scores, min(5, num_classes))
        top1 = jnp.sum(valid & (ranked[:, 0] == labels))
        top5 = jnp.sum(valid & jnp.any(ranked == labels[:, None], axis=1))
        counts.append(jnp.stack([top1, top5]))
    return jnp.stack(counts)


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
