"""kNN accuracy of the current encoder, run every N pretraining steps."""

import ml_collections
from jax.sharding import Mesh

from ssl_jax.data import get_source
from ssl_jax.encoder import Backbone, make_encode_fn
from ssl_jax.evaluators.features import extract_features, make_sharded_encode
from ssl_jax.evaluators.knn import knn_accuracies


class KnnMonitor:
    """Yields ``knn_top1_k{k}`` (train split as memory bank, test split as queries)."""

    def __init__(
        self,
        knn: ml_collections.ConfigDict,
        data: ml_collections.ConfigDict,
        backbone: Backbone,
        eval_settings: dict,
        mesh: Mesh,
    ):
        self.cfg = knn
        self.mesh = mesh
        self.train = get_source(data, "train")
        self.test = get_source(data, "test")
        self.encode = make_sharded_encode(make_encode_fn(backbone, **eval_settings), mesh)

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
        return {f"knn_{name}": value for name, value in acc.items() if name.startswith("top1")}
