"""Frozen-encoder features of every example of a source, on a device mesh."""

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm.auto import tqdm

from ssl_jax.data import iterate_eval
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
