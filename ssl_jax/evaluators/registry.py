"""Evaluators chosen by config: named entries of ``config.evals``, each with a ``type``.

big_vision's pattern: ``config.evals.<name> = dict(type=..., every_steps=..., ...)``. An entry
with ``every_steps > 0`` runs every that many steps and at the last step; its metrics go into
``metrics.jsonl`` as ``<name>_<metric>`` (``knn_top1_k20``, ``online_linear_top1``). Types:

- ``knn``: :class:`~ssl_jax.evaluators.knn_monitor.KnnMonitor`.
- ``online_linear``: a linear probe trained alongside pretraining on stop-gradient features
  (:mod:`ssl_jax.evaluators.online_linear`; ``batch_size`` for the test features).
- ``few_shot``: :class:`~ssl_jax.evaluators.few_shot.FewShotEvaluator`, N-way K-shot
  episodes; metrics ``proto_5way_1shot``, ``logreg_allway_5shot_ci95``...
- ``cluster``: :class:`~ssl_jax.evaluators.clustering.ClusterEvaluator`, k-means scored by
  ``acc``, ``nmi``, ``ari`` and ``inertia``.

Each type's fields and their defaults are :data:`DEFAULTS` (``configs/few_shot.py`` and
``configs/cluster.py`` explain them); :func:`eval_entry` makes an entry from them.
Add an entry (``c.evals.knn_small = dict(type="knn", every_steps=500, k=(5,), ...)``) in a
config file; shipped configs carry ``knn``, ``online_linear``, ``few_shot`` and ``cluster``, off
(``every_steps=0``).
"""

import ml_collections
from jax.sharding import Mesh

from ssl_jax.evaluators.clustering import ClusterEvaluator
from ssl_jax.evaluators.features import SplitFeatures, make_sharded_encode
from ssl_jax.evaluators.few_shot import FewShotEvaluator
from ssl_jax.evaluators.knn_monitor import KnnMonitor
from ssl_jax.evaluators.online_linear import OnlineLinearEvaluator, with_online_linear
from ssl_jax.export import make_encode_fn

EVALUATORS = {
    "knn": KnnMonitor,
    "online_linear": OnlineLinearEvaluator,
    "few_shot": FewShotEvaluator,
    "cluster": ClusterEvaluator,
}
# Each type's fields with their defaults; an entry of config.evals is eval_entry(type, ...).
DEFAULTS = {
    "knn": dict(k=(20, 200), temperature=0.07, batch_size=512),
    "online_linear": dict(batch_size=512),
    "few_shot": dict(
        ways=(5, -1),
        shots=(1, 5, 10, 25),
        queries=15,
        query_split="test",
        episodes=600,
        classifiers=("proto", "logreg"),
        logreg_c=1.0,
        logreg_tol=1e-4,
        seed=0,
        batch_size=512,
    ),
    "cluster": dict(split="test", k=-1, restarts=10, iterations=300, seed=0, batch_size=512),
}
# What a small smoke run (a config's ``:runlocal``) changes in each evaluator's defaults.
SMALL_RUN = {"few_shot": dict(episodes=50), "cluster": dict(restarts=2)}
# Evaluators that also read the train state's params (the others read the export only).
READS_PARAMS = ("online_linear",)


def eval_entry(kind: str, *, every_steps: int = 0, **fields) -> dict:
    """A ``config.evals`` entry of type ``kind``: its :data:`DEFAULTS`, ``fields`` on top;
    ``every_steps=0`` is off."""
    if kind not in DEFAULTS:
        raise ValueError(f"{kind!r} is not an evaluator type; valid: {sorted(DEFAULTS)}.")
    unknown = sorted(set(fields) - set(DEFAULTS[kind]))
    if unknown:
        raise ValueError(
            f"Evaluator {kind!r} has no field(s) {unknown}; valid: {sorted(DEFAULTS[kind])}."
        )
    return dict(type=kind, every_steps=every_steps, **{**DEFAULTS[kind], **fields})


def active_entries(evals: ml_collections.ConfigDict) -> dict:
    """``{name: entry}`` of the entries that run (``every_steps > 0``), validated."""
    active = {}
    for name, entry in evals.items():
        kind = entry.get("type")
        if kind not in EVALUATORS:
            raise ValueError(
                f"evals.{name}.type={kind!r} is not an evaluator type; valid: {sorted(EVALUATORS)}."
            )
        every = entry.get("every_steps", 0)
        if every < 0:
            raise ValueError(f"evals.{name}.every_steps must be >= 0 (0 = off), got {every}.")
        if every > 0:
            active[name] = entry
    if sum(e.type == "online_linear" for e in active.values()) > 1:
        raise ValueError("At most one online_linear entry can be active in config.evals.")
    return active


def maybe_with_online_linear(method, evals, *, num_classes: int, input_spec: dict):
    """:func:`~ssl_jax.evaluators.online_linear.with_online_linear` of ``method`` (a
    ``num_classes``-way probe on the features of ``input_spec``'s inputs) when an
    ``online_linear`` entry of ``evals`` (``config.evals``) is active; else ``method``."""
    if not any(e.type == "online_linear" for e in active_entries(evals).values()):
        return method
    encode = make_encode_fn(method.backbone, input_spec)
    return with_online_linear(method, num_classes=num_classes, encode=encode)


class Evaluators:
    """The active entries of ``config.evals``: ``evaluators(step, export, params) -> row``."""

    def __init__(
        self,
        evals: ml_collections.ConfigDict,
        data: ml_collections.ConfigDict,
        backbone,
        input_spec: dict,
        mesh: Mesh,
        *,
        total_steps: int,
    ):
        self.total_steps = total_steps
        self.entries = active_entries(evals)
        self.evaluators = {}
        if input_spec.get("kind") == "tokens":  # a text run: the evaluators take images
            if self.entries:
                raise ValueError(
                    f"evals {sorted(self.entries)}: the evaluators take images only, not a "
                    "text encoder yet; set --config.evals.<name>.every_steps=0."
                )
            return
        encode = make_sharded_encode(make_encode_fn(backbone, input_spec), mesh)
        self.features = SplitFeatures(data, encode, mesh)  # one encoding per split and step
        for name, entry in self.entries.items():
            try:
                self.evaluators[name] = EVALUATORS[entry.type](entry, self.features)
            except ValueError as e:  # a setting of this entry: name it
                raise ValueError(f"evals.{name}: {e}") from None

    def due(self, step: int) -> list[str]:
        return [
            name
            for name, entry in self.entries.items()
            if step % entry.every_steps == 0 or step == self.total_steps
        ]

    def __call__(self, step: int, export, params) -> dict:
        row = {}
        self.features.use(export)
        try:
            for name in self.due(step):
                evaluator = self.evaluators[name]
                args = (params,) if self.entries[name].type in READS_PARAMS else ()
                row.update({f"{name}_{k}": v for k, v in evaluator(*args).items()})
        finally:
            self.features.use(None)  # the features are not kept between evaluations
        return row
