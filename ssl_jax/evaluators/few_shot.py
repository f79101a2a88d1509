"""Few-shot classification on frozen features: N-way K-shot episodes.

An episode (:mod:`ssl_jax.evaluators.episodes`) draws N classes, K support images of each
from the support pool (the train split) and up to ``queries`` query images of each from the
query pool (the test split, or the support pool, disjoint from the support). A classifier
fitted on the N*K support features labels the queries; an episode's accuracy is the
fraction of its queries labelled right, and a setting reports the mean over episodes with the 95%
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
  :func:`~ssl_jax.evaluators.logreg.logistic_regression_logits`.

Episodes are drawn with NumPy from ``seed`` (each setting from ``(seed, N, K)``, so adding
a shot count to the list changes no other setting's episodes); the classifiers run jitted
and vmapped over chunks of episodes.
"""

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.typing import ArrayLike

from ssl_jax.data.subset import source_labels
from ssl_jax.evaluators.episodes import sample_episodes
from ssl_jax.evaluators.features import SplitFeatures
from ssl_jax.evaluators.logreg import logistic_regression_logits, logistic_regression_steps
from ssl_jax.losses import l2_normalize

CLASSIFIERS = ("proto", "logreg")
# Floats of gathered features (and Gram matrices) per jitted chunk of episodes.
_CHUNK_FLOATS = 1 << 25


def prototype_logits(support: ArrayLike, query: ArrayLike) -> jax.Array:
    """Cosine similarities ``(M, N)`` of queries ``(M, D)`` to the normalised means of each
    class's normalised support features ``(N, K, D)`` (Snell et al. 2017, cosine)."""
    protos = l2_normalize(jnp.mean(l2_normalize(jnp.asarray(support)), axis=1))
    return l2_normalize(jnp.asarray(query)) @ protos.T


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
    (:class:`~ssl_jax.evaluators.episodes.Episodes` fields ``support`` ``(E, N, K)``,
    ``query``, ``query_mask`` ``(E, N, Q)``) over features ``(n, D)`` of the two pools
    (normalised here)."""
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
