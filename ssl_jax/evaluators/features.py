"""Frozen-encoder features of every example of a source, on a device mesh: gathered to the
host (:func:`extract_features`) or left split over the devices (:func:`extract_bank`)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from ssl_jax.data import get_source, iterate_eval
from ssl_jax.parallel import DATA_AXIS, batch_sharded, check_batch_size, global_batch, replicated


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

    ``encode`` comes from :func:`make_sharded_encode`. Every process ends with all rows:
    :func:`extract_bank`'s bank, gathered to the host.
    """
    bank = extract_bank(
        encode, export, source, batch_size=batch_size, mesh=mesh, desc=desc, progress=progress
    )
    return bank.to_host()


class FeatureBank(NamedTuple):
    """The features of every example of a split, kept on the devices, split over them.

    ``features`` ``(batches, B, D)``, ``labels`` and ``mask`` ``(batches, B)``: batch ``i`` of
    :func:`~ssl_jax.data.iterate_eval` at index ``i``, its rows split over the ``data`` axis as
    the batch was (``P(None, "data")``), so a device holds ``1 / devices`` of the split and no
    host or device ever holds it whole. ``mask`` is False on the padding of the last batch.
    """

    features: jax.Array
    labels: jax.Array
    mask: jax.Array

    @classmethod
    def from_host(cls, features, labels, *, batch_size: int, mesh: Mesh) -> "FeatureBank":
        """A bank of host arrays ``features (N, D)`` and ``labels (N,)`` (the same on every
        process), in batches of ``batch_size`` split over ``mesh``, the last one padded."""
        check_batch_size(batch_size, mesh)
        features, labels = np.asarray(features, np.float32), np.asarray(labels, np.int32)
        batches = -(-len(features) // batch_size)
        pad = batches * batch_size - len(features)
        mask = np.arange(batches * batch_size) < len(features)
        arrays = (
            np.pad(features, ((0, pad), (0, 0))).reshape(batches, batch_size, -1),
            np.pad(labels, (0, pad)).reshape(batches, batch_size),
            mask.reshape(batches, batch_size),
        )
        rows = NamedSharding(mesh, P(None, DATA_AXIS))
        return cls(
            *(jax.make_array_from_callback(x.shape, rows, lambda i, x=x: x[i]) for x in arrays)
        )

    @property
    def count(self) -> int:
        """The examples (padding excluded)."""
        return int(np.asarray(_replicated_sum(self.mask)))

    def to_host(self) -> tuple[np.ndarray, np.ndarray]:
        """``(features (N, D) float32, labels (N,) int32)`` in source order, on every process
        (what :func:`extract_features` returns): for the evaluators that need every row."""
        rows = [
            np.asarray(multihost_utils.process_allgather(x, tiled=True))
            for x in (self.features, self.labels, self.mask)
        ]
        features, labels, mask = (x.reshape(-1, *x.shape[2:]) for x in rows)
        return features[mask].astype(np.float32), labels[mask].astype(np.int32)


def _empty_bank(batches: int, batch_shape: tuple[int, ...], rows: NamedSharding):
    """Zero features, labels and mask for ``batches`` batches of ``batch_shape`` features."""
    zeros = lambda: (  # noqa: E731
        jnp.zeros((batches, *batch_shape), jnp.float32),
        jnp.zeros((batches, batch_shape[0]), jnp.int32),
        jnp.zeros((batches, batch_shape[0]), bool),
    )
    return jax.jit(zeros, out_shardings=(rows, rows, rows))()


@jax.jit
def _replicated_sum(mask):
    return jnp.sum(mask.astype(jnp.int32))


def extract_bank(
    encode, export, source, *, batch_size: int, mesh: Mesh, desc: str = "", progress=True
) -> FeatureBank:
    """The :class:`FeatureBank` of ``source`` under ``export`` (``encode`` from
    :func:`make_sharded_encode`): every example encoded once, the features left on the devices
    where the encoder wrote them."""
    check_batch_size(batch_size, mesh)
    total = -(-len(source) // batch_size)
    batches = iterate_eval(
        source,
        batch_size=batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    rows = NamedSharding(mesh, P(None, DATA_AXIS))
    put = jax.jit(
        lambda bank, i, x: jax.lax.dynamic_update_index_in_dim(bank, x.astype(bank.dtype), i, 0),
        out_shardings=rows,
        donate_argnums=0,
    )
    bank = None
    for i, local in enumerate(
        tqdm(batches, total=total, desc=desc, disable=not progress, leave=False)
    ):
        batch = global_batch(local, mesh)
        out = encode(export, batch["images"])
        if bank is None:
            bank = list(_empty_bank(total, out.shape, rows))
        index = jnp.asarray(i, jnp.int32)
        for j, x in enumerate((out, batch["labels"], batch["mask"])):
            bank[j] = put(bank[j], index, x)
    return FeatureBank(*bank)


class SplitFeatures:
    """The features of the data's splits under one export, each split encoded at most once.

    The evaluators that run at one pretraining step share it (a kNN monitor, few-shot and
    clustering all read the test split's features): :meth:`use` sets the export and forgets
    the previous one's features; :meth:`bank` encodes a split the first time it is asked for
    (with that batch size) and keeps it split over the devices (kNN, the online probe);
    calling the object gives the same features gathered to the host (few-shot, clustering).
    """

    def __init__(self, data: ml_collections.ConfigDict, encode, mesh: Mesh):
        self.data, self.encode, self.mesh = data, encode, mesh
        self._sources: dict[str, object] = {}
        self._banks: dict[str, FeatureBank] = {}
        self._host: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._export = None

    def source(self, split: str):
        """The data source of ``split`` (``train`` / ``test``), opened once."""
        if split not in self._sources:
            self._sources[split] = get_source(self.data, split)
        return self._sources[split]

    def use(self, export) -> None:
        """Encode with ``export`` from now on (None: release the features held)."""
        self._export, self._banks, self._host = export, {}, {}

    def bank(self, split: str, *, batch_size: int) -> FeatureBank:
        """``split``'s :class:`FeatureBank` (encoded now unless it already is)."""
        if self._export is None:
            raise RuntimeError("SplitFeatures.use(export) must come before asking for features.")
        if split not in self._banks:
            self._banks[split] = extract_bank(
                self.encode,
                self._export,
                self.source(split),
                batch_size=batch_size,
                mesh=self.mesh,
                progress=False,
            )
        return self._banks[split]

    def __call__(self, split: str, *, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        if split not in self._host:
            self._host[split] = self.bank(split, batch_size=batch_size).to_host()
        return self._host[split]
