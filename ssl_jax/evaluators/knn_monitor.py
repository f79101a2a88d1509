"""kNN accuracy of the current encoder, run every N pretraining steps (evaluator ``knn``).

It encodes as downstream programs do, through the step's shared
:class:`~ssl_jax.evaluators.features.SplitFeatures` (the sharded
:func:`ssl_jax.export.make_encode_fn` of the export's backbone and spec ``input`` section),
and keeps both splits' features split over the devices (:func:`~ssl_jax.evaluators.knn.
bank_accuracies`).
"""

import ml_collections

from ssl_jax.evaluators.features import SplitFeatures
from ssl_jax.evaluators.knn import bank_accuracies, check_ks


class KnnMonitor:
    """Yields ``top1_k{k}`` (train split as memory bank, test split as queries)."""

    def __init__(self, entry: ml_collections.ConfigDict, features: SplitFeatures):
        self.cfg = entry
        self.features = features
        self.num_classes = max(features.source(s).num_classes for s in ("train", "test"))
        check_ks(entry.k, len(features.source("train")), "k")  # at start, not at the first eval

    def __call__(self) -> dict:
        train = self.features.bank("train", batch_size=self.cfg.batch_size)
        test = self.features.bank("test", batch_size=self.cfg.batch_size)
        acc = bank_accuracies(
            train,
            test,
            ks=self.cfg.k,
            temperature=self.cfg.temperature,
            num_classes=self.num_classes,
            mesh=self.features.mesh,
        )
        return {name: value for name, value in acc.items() if name.startswith("top1")}
