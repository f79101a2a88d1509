"""kNN accuracy of the current encoder, run every N pretraining steps (evaluator ``knn``).

It encodes as downstream programs do: ``encode`` is the sharded
:func:`ssl_jax.encoder.make_encode_fn` of the export's backbone and spec ``input`` section.
"""

import ml_collections
from jax.sharding import Mesh

from ssl_jax.data import get_source
from ssl_jax.evaluators.features import extract_features
from ssl_jax.evaluators.knn import knn_accuracies


class KnnMonitor:
    """Yields ``top1_k{k}`` (train split as memory bank, test split as queries)."""

    def __init__(
        self,
        entry: ml_collections.ConfigDict,
        data: ml_collections.ConfigDict,
        encode,
        mesh: Mesh,
    ):
        self.cfg = entry
        self.mesh = mesh
        self.train = get_source(data, "train")
        self.test = get_source(data, "test")
        self.encode = encode

    def __call__(self, export) -> dict:
        kw = dict(batch_size=self.cfg.batch_size, mesh=self.mesh, progress=False)
        train = extract_features(self.encode, export, self.train, **kw)
        test = extract_features(self.encode, export, self.test, **kw)
        acc = knn_accuracies(
            train,
            test,
            ks=self.cfg.k,
            temperature=self.cfg.temperature,
            num_classes=max(self.train.num_classes, self.test.num_classes),
        )
        return {name: value for name, value in acc.items() if name.startswith("top1")}
