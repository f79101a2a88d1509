"""Data sources (embedded digits, npz folders, image folders, ArrayRecord shards, tfds) and the
Grain pipeline of per-process batches.

Everything leaves this package as uint8 RGB images `(N, H, W, 3)` and int32 labels `(N,)`;
augmentation happens later, on the accelerator.
"""

from ssl_jax.data.base import ArraySource, Source, resize_images
from ssl_jax.data.digits import make_digits_source
from ssl_jax.data.errors import DataError
from ssl_jax.data.folder import FolderSource
from ssl_jax.data.loader import BatchIterator, iterate_eval
from ssl_jax.data.npz import make_npz_source
from ssl_jax.data.pipeline import resolve_workers, stream
from ssl_jax.data.records import RecordSource
from ssl_jax.data.registry import SOURCES, get_source
from ssl_jax.data.tfds_source import TfdsSource

__all__ = [
    "SOURCES",
    "ArraySource",
    "BatchIterator",
    "DataError",
    "FolderSource",
    "RecordSource",
    "Source",
    "TfdsSource",
    "get_source",
    "iterate_eval",
    "make_digits_source",
    "make_npz_source",
    "resize_images",
    "resolve_workers",
    "stream",
]
