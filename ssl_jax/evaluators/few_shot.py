"""Few-shot classification on frozen features: N-way K-shot episodes.

An episode draws N classes, K support images of each from the support pool (the train
split) and up to ``queries`` query images of each from the query pool (the test split,
clipped to what the class has; or, with the same pool for both, disjoint from the support,
up to what is left of the class after the K support images). A classifier fitted on the
N*K support features labels the queries; an episode's accuracy is the fraction of its
queries labelled right, and a setting reports the mean over episodes with the 95%
confidence interval ``1.96 * std / sqrt(episodes)`` (std with ``ddof=1``), both in %.
Features are L2-normalised first. Classifiers:

- ``proto``: nearest centroid with cosine similarity, the prototypes of Snell et al. 2017
  ("Prototypical Networks for Few-shot Learning"): the mean of each class's normalised
  support features, itself normalised.
- ``logreg``: multinomial logistic regression on the support set, the protocol of Tian et
  al. 2020 ("Rethinking Few-Shot Image Classification: a Good Embedding Is All You Need"),
  which fits scikit-learn's ``LogisticRegression`` (L2 penalty, ``C=1``) on normalised
  features. The same objective, ``sum_i CE_i + ||W||^2 / (2 C)`` with an unpenalised bias,
  is minimised here, batched over episodes, by Nesterov's accelerated gradient for as
  many steps as its convergence bound needs to reach ``tol``: see
  :func:`logistic_regression_logits`.

Episodes are drawn with NumPy from ``seed`` (each setting from ``(seed, N, K)``, so adding
a shot count to the list changes no other setting's episodes); the classifiers run jitted
and vmapped over chunks of episodes.
"""

import math
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.typing import ArrayLike

from ssl_jax.data.subset import source_labels
from ssl_jax.evaluators.features import SplitFeatures
from ssl_jax.losses import l2_normalize

CLASSIFIERS = ("proto", "logreg")
# Floats of gathered features (and Gram matrices) per jitted chunk of episodes.
_CHUNK_FLOATS = 1 << 25


class Episodes(NamedTuple):
    """``episodes`` N-way K-shot episodes with up to Q queries per class, as pool indices.

    ``classes`` ``(E, N)``: the class ids, way ``i`` of episode ``e`` is ``classes[e, i]``;
    ``support`` ``(E, N, K)``: indices into the support pool (images of that class);
    ``query`` ``(E, N, Q)``: indices into the query pool, valid where ``query_mask``
    ``(E, N, Q)`` is true (padding indices are 0).
    """

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray
    query_mask: np.ndarray


def _sample_positions(
    rng: np.random.Generator, pool: np.ndarray, take: np.ndarray, width: int
) -> np.ndarray:
    """``(R, width)`` int: row ``r`` starts with ``take[r]`` distinct positions of
    ``range(pool[r])`` in uniformly random order (the rest 0).

    Floyd's algorithm over all rows at once (``width`` steps, memory ``R * width``), then a
    shuffle of each row's valid part: the cost does not grow with the pool sizes.
    """
    rows = len(pool)
    out = np.zeros((rows, width), np.int64)
    for i in range(width):
        active = i < take
        top = np.where(active, pool - take + i, 0)  # Floyd: j = n - m + i, t ~ U{0..j}
        t = np.minimum((rng.random(rows) * (top + 1)).astype(np.int64), top)
        seen = (out[:, :i] == t[:, None]).any(axis=1)
        out[:, i] = np.where(active, np.where(seen, top, t), 0)
    keys = rng.random((rows, width))
    keys[np.arange(width) >= take[:, None]] = np.inf
    return np.take_along_axis(out, np.argsort(keys, axis=1), axis=1)


def _counts(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Images of each of ``classes`` (sorted, a superset of ``labels``) in ``labels``."""
    return np.bincount(np.searchsorted(classes, labels), minlength=len(classes))


def _class_index(labels: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, starts)``: ``order[starts[c] + j]`` is the j-th example of ``classes[c]``."""
    order = np.argsort(labels, kind="stable")
    return order, np.searchsorted(labels[order], classes)


def sample_episodes(
    support_labels: ArrayLike,
    query_labels: ArrayLike | None = None,
    *,
    ways: int,
    shots: int,
    queries: int,
    episodes: int,
    seed: int | Sequence[int],
    support_name: str = "train",
    query_name: str = "test",
) -> Episodes:
    """Seeded N-way (``ways``; -1 = every class) K-shot (``shots``) episodes.

    The classes are those of either pool; an episode's N classes are distinct, its support
    images distinct. ``query_labels=None`` draws queries from the support pool too,
    disjoint from the episode's support (a class then needs K + 1 images). Queries per class:
    ``queries``, clipped to what the class has. Raises ``ValueError`` (naming the pool by
    ``support_name`` / ``query_name``) when a class has fewer than K support images (or no
    query), or when N exceeds the number of classes.
    """
    support_labels = np.asarray(support_labels)
    same_pool = query_labels is None
    query_labels = support_labels if same_pool else np.asarray(query_labels)
    for name, value, low in (
        ("shots", shots, 1),
        ("queries", queries, 1),
        ("episodes", episodes, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"few-shot {name} must be an int >= {low}, got {value!r}.")
    if isinstance(ways, bool) or not isinstance(ways, int | np.integer):
        raise ValueError(f"few-shot ways must be an int (-1: all-way), got {ways!r}.")
    classes = np.union1d(support_labels, query_labels)
    if ways == -1:
        ways = len(classes)
    if not 2 <= ways <= len(classes):
        raise ValueError(
            f"{ways}-way episodes need {ways} classes, but the {support_name}/{query_name} "
            f"data has {len(classes)}; use ways between 2 and {len(classes)} (or -1 for "
            "all-way)."
        )
    support_count = _counts(support_labels, classes)
    need = shots + 1 if same_pool else shots
    if (short := np.flatnonzero(support_count < need)).size:
        c = short[0]
        extra = " (K support + at least 1 query from the same split)" if same_pool else ""
        raise ValueError(
            f"class {classes[c]} has {support_count[c]} {support_name} images, K={shots} needs "
            f"{need}{extra}; {len(short)} class(es) have too few. Lower the shots or use data "
            "with more images per class."
        )
    query_count = support_count if same_pool else _counts(query_labels, classes)
    if not same_pool and (empty := np.flatnonzero(query_count == 0)).size:
        raise ValueError(
            f"class {classes[empty[0]]} has no {query_name} images to query; every class of "
            f"the {support_name} split needs some in the {query_name} split."
        )

    rng = np.random.default_rng(seed)
    chosen = np.argsort(rng.random((episodes, len(classes))), axis=1)[:, :ways]
    rows = chosen.ravel()
    s_order, s_start = _class_index(support_labels, classes)
    if same_pool:
        take = np.minimum(queries, support_count[rows] - shots)
        width = shots + int(take.max())
        pos = _sample_positions(rng, support_count[rows], shots + take, width)
        support_pos, query_pos = pos[:, :shots], pos[:, shots:]
        q_order, q_start = s_order, s_start
    else:
        support_pos = _sample_positions(rng, support_count[rows], np.full(len(rows), shots), shots)
        take = np.minimum(queries, query_count[rows])
        query_pos = _sample_positions(rng, query_count[rows], take, int(take.max()))
        q_order, q_start = _class_index(query_labels, classes)
    mask = np.arange(query_pos.shape[1]) < take[:, None]
    support = s_order[s_start[rows, None] + support_pos]
    query = np.where(mask, q_order[q_start[rows, None] + query_pos], 0)
    shape = (episodes, ways, -1)
    return Episodes(
        classes=classes[chosen],
        support=support.reshape(shape),
        query=query.reshape(shape),
        query_mask=mask.reshape(shape),
    )


def prototype_logits(support: ArrayLike, query: ArrayLike) -> jax.Array:
    """Cosine similarities ``(M, N)`` of queries ``(M, D)`` to the normalised means of each
    class's normalised support features ``(N, K, D)`` (Snell et al. 2017, cosine)."""
    protos = l2_normalize(jnp.mean(l2_normalize(jnp.asarray(support)), axis=1))
    return l2_normalize(jnp.asarray(query)) @ protos.T


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


@partial(jax.jit, static_argnames=("classifiers", "logreg_c", "logreg_tol"))
def episode_accuracies(
    support_pool: ArrayLike,
    query_pool: ArrayLike,
    support: ArrayLike,
    query: ArrayLike,
    query_mask: ArrayLike,
    *,
    classifiers: tuple[str, ...] = CLASSIFIERS,
    logreg_c: float = 1.0,
    logreg_tol: float = 1e-4,
) -> dict:
    """``{classifier: accuracy (E,)}`` (fractions) of episodes given as pool indices
    (:class:`Episodes` fields ``support`` ``(E, N, K)``, ``query``, ``query_mask``
    ``(E, N, Q)``) over features ``(n, D)`` of the two pools (normalised here)."""
    s = l2_normalize(jnp.asarray(support_pool, jnp.float32)[support])  # (E, N, K, D)
    q = l2_normalize(jnp.asarray(query_pool, jnp.float32)[query])  # (E, N, Q, D)
    e, ways, shots, dim = s.shape
    q = q.reshape(e, -1, dim)
    query_labels = jnp.repeat(jnp.arange(ways), query.shape[2])
    support_labels = jnp.repeat(jnp.arange(ways), shots)
    fits = {
        "proto": prototype_logits,
        "logreg": lambda s, q: logistic_regression_logits(
            s.reshape(-1, dim),
            support_labels,
            q,
            num_classes=ways,
            c=logreg_c,
            tol=logreg_tol,
        ),
    }
    mask = jnp.asarray(query_mask).reshape(e, -1)
    out = {}
    for name in classifiers:
        logits = jax.vmap(fits[name])(s, q)
        correct = (jnp.argmax(logits, axis=-1) == query_labels) & mask
        out[name] = jnp.sum(correct, axis=1) / jnp.sum(mask, axis=1)
    return out


def mean_and_ci95(accuracies: ArrayLike) -> tuple[float, float]:
    """``(mean, 1.96 * std / sqrt(E))`` of per-episode accuracies, std with ``ddof=1``."""
    a = np.asarray(accuracies, np.float64)
    if a.size < 2:
        raise ValueError(f"A confidence interval needs >= 2 episodes, got {a.size}.")
    return float(a.mean()), float(1.96 * a.std(ddof=1) / np.sqrt(a.size))


def _check_classifiers(classifiers: Sequence[str]) -> tuple[str, ...]:
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    unknown = [c for c in classifiers if c not in CLASSIFIERS]
    if unknown or not classifiers:
        raise ValueError(
            f"few-shot classifiers {list(classifiers)} must be a non-empty subset of "
            f"{list(CLASSIFIERS)}."
        )
    return classifiers


def _check_options(classifiers, episodes, logreg_c, logreg_tol) -> tuple[str, ...]:
    logistic_regression_steps(1, logreg_c, logreg_tol)  # validates both
    if isinstance(episodes, bool) or not isinstance(episodes, int | np.integer) or episodes < 2:
        raise ValueError(f"few-shot episodes must be an int >= 2 (for the CI), got {episodes!r}.")
    return _check_classifiers(classifiers)


def check_few_shot(
    support_labels: ArrayLike,
    query_labels: ArrayLike | None = None,
    *,
    ways: Sequence[int],
    shots: Sequence[int],
    queries: int,
    episodes: int,
    classifiers: Sequence[str],
    logreg_c: float,
    logreg_tol: float,
    support_name: str = "train",
    query_name: str = "test",
) -> None:
    """Raises the ``ValueError`` :func:`few_shot_accuracies` would raise for these labels
    and options, without features: run it before encoding anything."""
    _check_options(classifiers, episodes, logreg_c, logreg_tol)
    for n in ways:
        for k in shots:
            sample_episodes(
                support_labels,
                query_labels,
                ways=n,
                shots=k,
                queries=queries,
                episodes=1,
                seed=0,
                support_name=support_name,
                query_name=support_name if query_labels is None else query_name,
            )


def setting_name(ways: int, shots: int) -> str:
    """``"5way_1shot"``; ways -1 (every class) is ``"allway"``."""
    return f"{'all' if ways == -1 else ways}way_{shots}shot"


def few_shot_accuracies(
    support_features: ArrayLike,
    support_labels: ArrayLike,
    query_features: ArrayLike | None = None,
    query_labels: ArrayLike | None = None,
    *,
    ways: Sequence[int] = (5, -1),
    shots: Sequence[int] = (1, 5, 10, 25),
    queries: int = 15,
    episodes: int = 600,
    classifiers: Sequence[str] = CLASSIFIERS,
    logreg_c: float = 1.0,
    logreg_tol: float = 1e-4,
    seed: int = 0,
    support_name: str = "train",
    query_name: str = "test",
) -> dict:
    """``{"{classifier}_{N}way_{K}shot": mean %, "..._ci95": half-width %}`` for every
    ``ways`` x ``shots`` setting (``-1``: all-way, named ``allway``).

    Query features ``None``: queries come from the support pool, disjoint from each
    episode's support. See the module docstring for the protocol.
    """
    classifiers = _check_options(classifiers, episodes, logreg_c, logreg_tol)
    support_features = jnp.asarray(support_features, jnp.float32)
    same_pool = query_features is None
    query_features = support_features if same_pool else jnp.asarray(query_features, jnp.float32)
    dim = support_features.shape[1]
    out = {}
    for n in ways:
        for k in shots:
            ep = sample_episodes(
                support_labels,
                None if same_pool else query_labels,
                ways=n,
                shots=k,
                queries=queries,
                episodes=episodes,
                seed=(seed, max(n, 0), k),
                support_name=support_name,
                query_name=support_name if same_pool else query_name,
            )
            size = ep.support[0].size
            per_episode = (size + ep.query[0].size) * dim + size * (size + ep.query[0].size)
            chunk = max(1, min(episodes, _CHUNK_FLOATS // per_episode))
            results = {name: [] for name in classifiers}
            for start in range(0, episodes, chunk):
                idx = np.arange(start, start + chunk) % episodes  # last chunk: same shape
                acc = episode_accuracies(
                    support_features,
                    query_features,
                    ep.support[idx],
                    ep.query[idx],
                    ep.query_mask[idx],
                    classifiers=classifiers,
                    logreg_c=float(logreg_c),
                    logreg_tol=float(logreg_tol),
                )
                keep = min(chunk, episodes - start)
                for name in classifiers:
                    results[name].append(np.asarray(acc[name])[:keep])
            for name in classifiers:
                mean, ci = mean_and_ci95(np.concatenate(results[name]))
                key = f"{name}_{setting_name(n, k)}"
                out[key], out[f"{key}_ci95"] = 100.0 * mean, 100.0 * ci
    return out


def few_shot_options(cfg: ml_collections.ConfigDict) -> dict:
    """The keyword arguments of :func:`few_shot_accuracies` in a config section or entry."""
    return dict(
        ways=tuple(cfg.ways),
        shots=tuple(cfg.shots),
        queries=cfg.queries,
        episodes=cfg.episodes,
        classifiers=tuple(cfg.classifiers),
        logreg_c=cfg.logreg_c,
        logreg_tol=cfg.logreg_tol,
    )


def check_query_split(split: str) -> str:
    """``split`` if it is a valid ``query_split`` (``test`` or ``train``)."""
    if split not in ("test", "train"):
        raise ValueError(
            f"few-shot query_split={split!r} is not 'test' (queries from the test split) or "
            "'train' (from the train split, disjoint from each episode's support)."
        )
    return split


class FewShotEvaluator:
    """Evaluator ``few_shot``: :func:`few_shot_accuracies` with the entry's fields (``ways``,
    ``shots``, ``queries``, ``episodes``, ``classifiers``, ``logreg_c``, ``logreg_tol``,
    ``query_split``, ``seed``: the same episodes at every evaluation; ``batch_size``)."""

    def __init__(self, entry: ml_collections.ConfigDict, features: SplitFeatures):
        self.cfg = entry
        self.features = features
        self.query_test = check_query_split(entry.query_split) == "test"
        check_few_shot(
            source_labels(features.source("train")),
            source_labels(features.source("test")) if self.query_test else None,
            **few_shot_options(entry),
        )

    def __call__(self) -> dict:
        train = self.features("train", batch_size=self.cfg.batch_size)
        test = (None, None)
        if self.query_test:
            test = self.features("test", batch_size=self.cfg.batch_size)
        return few_shot_accuracies(*train, *test, seed=self.cfg.seed, **few_shot_options(self.cfg))
