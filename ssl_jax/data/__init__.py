"""Data sources (embedded digits, npz folders, image folders, ArrayRecord shards, tfds; text:
jsonl and .txt folders) and the Grain pipeline of per-process batches.

Images leave this package as uint8 RGB `(N, H, W, 3)` with int32 labels `(N,)`; augmentation
happens later, on the accelerator. Text leaves it as int32 token records `{"tokens",
"segments"}` `(N, seq_len)` (:mod:`ssl_jax.data.tokens`).
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
from ssl_jax.data.text import TextSource, make_jsonl_source, make_text_source
from ssl_jax.data.tfds_source import TfdsSource
from ssl_jax.data.tokens import TokenSource

__all__ = [
    "SOURCES",
    "ArraySource",
    "BatchIterator",
    "DataError",
    "FolderSource",
    "RecordSource",
    "Source",
    "TextSource",
    "TfdsSource",
    "TokenSource",
    "get_source",
    "iterate_eval",
    "make_digits_source",
    "make_jsonl_source",
    "make_npz_source",
    "make_text_source",
    "resize_images",
    "resolve_workers",
    "stream",
]
