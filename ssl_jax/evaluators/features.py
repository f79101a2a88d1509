"""Frozen-encoder features of every example of a source, on a device mesh."""

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm.auto import tqdm

from ssl_jax.data import get_source, iterate_eval
from ssl_jax.parallel import batch_sharded, check_batch_size, global_batch, replicated


def make_sharded_encode(encode_fn, mesh: Mesh):
    """Jit ``encode(export, images)`` with a replicated export and a batch-split input."""
    return jax.jit(
        encode_fn,
        in_shardings=(replicated(mesh), batch_sharded(mesh)),
        out_shardings=batch_sharded(mesh),
    )


def extract_features(
    encode, export, source, *, batch_size: int, mesh: Mesh, desc: str = "", progress=True
) -> tuple[np.ndarray, np.ndarray]:
    """``(features (N, D) float32, labels (N,) int32)`` for every example, in source order.

    ``encode`` comes from :func:`make_sharded_encode`. Every process ends with all rows.
    """
    check_batch_size(batch_size, mesh)
    feats, labels = [], []
    batches = iterate_eval(
        source,
        batch_size=batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    total = -(-len(source) // batch_size)
    for local in tqdm(batches, total=total, desc=desc, disable=not progress, leave=False):
        batch = global_batch(local, mesh)
        out = encode(export, batch["images"])
        f, y, m = (
            np.asarray(multihost_utils.process_allgather(x, tiled=True))
            for x in (out, batch["labels"], batch["mask"])
        )
        feats.append(f[m])
        labels.append(y[m])
    return np.concatenate(feats).astype(np.float32), np.concatenate(labels).astype(np.int32)


class SplitFeatures:
    """The features of the data's splits under one export, each split encoded at most once.

    The evaluators that run at one pretraining step share it (a kNN monitor, few-shot and
    clustering all read the test split's features): :meth:`use` sets the export and forgets
    the previous one's features, ``features(split, batch_size=...)`` encodes ``split`` the
    first time it is asked for (with that batch size; features do not depend on it).
    """

    def __init__(self, data: ml_collections.ConfigDict, encode, mesh: Mesh):
        self.data, self.encode, self.mesh = data, encode, mesh
        self._sources: dict[str, object] = {}
        self._features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._export = None

    def source(self, split: str):
        """The data source of ``split`` (``train`` / ``test``), opened once."""
        if split not in self._sources:
            self._sources[split] = get_source(self.data, split)
        return self._sources[split]

    def use(self, export) -> None:
        """Encode with ``export`` from now on (None: release the features held)."""
        self._export, self._features = export, {}

    def __call__(self, split: str, *, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        if self._export is None:
            raise RuntimeError("SplitFeatures.use(export) must come before asking for features.")
        if split not in self._features:
            self._features[split] = extract_features(
                self.encode,
                self._export,
                self.source(split),
                batch_size=batch_size,
                mesh=self.mesh,
                progress=False,
            )
        return self._features[split]
