"""`get_source(data_config, split)`: the source named by `data_config.name`.

Fields read from `data_config` (an `ml_collections.ConfigDict` or any attribute object):
`name` (required), `path` (npz, folder, records), `image_size` (None: native size; digits: 32),
`num_classes` (npz, jsonl, optional), `tfds_name`, `tfds_data_dir`, `train_split`, `test_split`.

Text sources (``jsonl``, ``text``: :mod:`ssl_jax.data.text`) also read `text_unit` (text) and
`max_documents` (the first N documents of each split, for quick runs); with `seq_len` set they
are tokenised into int32 token records (:func:`ssl_jax.data.tokens.tokenize_source`: fields
`tokenizer`, `vocab_size`, `pack`, `lowercase`), with the run's tokenizer in ``workdir``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ssl_jax.data.base import Source
from ssl_jax.data.digits import make_digits_source
from ssl_jax.data.errors import DataError
from ssl_jax.data.folder import FolderSource
from ssl_jax.data.npz import make_npz_source
from ssl_jax.data.records import RecordSource
from ssl_jax.data.text import make_jsonl_source, make_text_source
from ssl_jax.data.tfds_source import TfdsSource
from ssl_jax.data.tokens import tokenize_source


def _required(cfg: Any, field: str, example: str) -> Any:
    value = getattr(cfg, field, None)
    if not value:
        raise DataError(
            f"data source {cfg.name!r} needs data.{field}, found {value!r}; "
            f"set --config.data.{field}={example}."
        )
    return value


def _digits(cfg: Any, split: str) -> Source:
    image_size = getattr(cfg, "image_size", None)
    return make_digits_source(split, image_size=32 if image_size is None else image_size)


def _npz(cfg: Any, split: str) -> Source:
    return make_npz_source(
        _required(cfg, "path", "/path/to/npz_folder"),
        split,
        image_size=getattr(cfg, "image_size", None),
        num_classes=getattr(cfg, "num_classes", None),
    )


def _folder(cfg: Any, split: str) -> Source:
    return FolderSource(
        _required(cfg, "path", "/path/to/image_folder"),
        split,
        image_size=getattr(cfg, "image_size", None),
    )


def _records(cfg: Any, split: str) -> Source:
    return RecordSource(
        _required(cfg, "path", "/path/to/records_folder"),
        split,
        image_size=getattr(cfg, "image_size", None),
    )


def _tfds(cfg: Any, split: str) -> Source:
    return TfdsSource(
        _required(cfg, "tfds_name", "cifar10"),
        split,
        data_dir=getattr(cfg, "tfds_data_dir", None),
        image_size=getattr(cfg, "image_size", None),
        train_split=getattr(cfg, "train_split", None) or "train",
        test_split=getattr(cfg, "test_split", None) or "test",
    )


def _jsonl(cfg: Any, split: str) -> Source:
    return make_jsonl_source(
        _required(cfg, "path", "/path/to/jsonl_folder"),
        split,
        num_classes=getattr(cfg, "num_classes", None),
    )


def _text(cfg: Any, split: str) -> Source:
    return make_text_source(
        _required(cfg, "path", "/path/to/text_folder"),
        split,
        unit=getattr(cfg, "text_unit", None) or "file",
    )


SOURCES: dict[str, Callable[[Any, str], Source]] = {
    "digits": _digits,
    "npz": _npz,
    "folder": _folder,
    "records": _records,
    "tfds": _tfds,
    "jsonl": _jsonl,
    "text": _text,
}


def get_source(data_config: Any, split: str, *, workdir: Any = None) -> Source:
    """Builds split `"train"` or `"test"` of the source `data_config.name` (see module doc);
    ``workdir`` holds a text run's tokenizer."""
    name = getattr(data_config, "name", None)
    if name not in SOURCES:
        raise ValueError(
            f"Unknown data source {name!r}; valid names: {sorted(SOURCES)}. "
            "Set --config.data.name=..."
        )
    source = SOURCES[name](data_config, split)
    if not getattr(source, "documents", False):
        return source
    count = getattr(data_config, "max_documents", None)
    source = source.head(count)
    if getattr(data_config, "seq_len", None) is None:
        return source

    def train_documents():
        return source if split == "train" else SOURCES[name](data_config, "train").head(count)

    return tokenize_source(data_config, source, train_documents, workdir)
