"""ArrayRecord shards: the format Grain reads fastest, written by ``launch/convert_data.py``.

A records folder holds, per split, shards ``{split}-00000-of-00004.array_record`` and one
``manifest.json``::

    {"format": "ssl_jax.records/1", "class_names": [...], "num_classes": 10,
     "splits": {"train": {"count": 50000, "shards": [{"file": ..., "count": ...,
                "sha256": ...}, ...], "image_shape": [32, 32, 3]}, ...}}

Each record is a msgpack map: ``{"label": int}`` plus the example, which for an image is
``"image"`` (the encoded file's bytes, ``"encoding": "file"``, decoded by PIL) or raw pixels
(``"encoding": "raw"`` with ``"shape": [H, W, C]``: no decoding at all). Other keys
(``"text"``, ``"tokens"``) are left to the sources that read them. Records are read with random
access (``group_size:1``), so batches keep the loader's ``(seed, step)`` order.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgpack
import numpy as np
from etils import epath

from ssl_jax.data.base import as_size, check_split, decode_image_bytes, resize_image
from ssl_jax.data.errors import DataError

FORMAT = "ssl_jax.records/1"
MANIFEST = "manifest.json"
WRITER_OPTIONS = "group_size:1"  # one record per chunk: random access reads one record


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.array_record"


def encode_record(label: int, *, image: bytes | None = None, pixels: np.ndarray | None = None):
    """One record's bytes: an encoded image file's bytes, or raw uint8 pixels ``(H, W, C)``."""
    if (image is None) == (pixels is None):
        raise ValueError("encode_record takes exactly one of image= or pixels=")
    record: dict[str, Any] = {"label": int(label)}
    if image is not None:
        record.update(image=bytes(image), encoding="file")
    else:
        pixels = np.ascontiguousarray(pixels, np.uint8)
        record.update(image=pixels.tobytes(), encoding="raw", shape=list(pixels.shape))
    return msgpack.packb(record, use_bin_type=True)


def decode_record(data: bytes, where: str) -> dict[str, Any]:
    try:
        record = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise DataError(f"{where}: not an ssl_jax record ({type(e).__name__}: {e}).") from e
    if not isinstance(record, dict) or "label" not in record:
        raise DataError(f"{where}: not an ssl_jax record (no label).")
    return record


def record_image(record: dict[str, Any], where: str) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` of a decoded record."""
    if record.get("encoding") == "raw":
        pixels = np.frombuffer(record["image"], np.uint8).reshape(record["shape"])
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels
    if "image" not in record:
        raise DataError(f"{where}: the record has no image (keys {sorted(record)}).")
    return decode_image_bytes(record["image"], where)


def sha256(path: epath.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(root: epath.Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.exists():
        raise DataError(
            f"{root}: no {MANIFEST}; expected a folder written by launch/convert_data.py "
            "(ArrayRecord shards and their manifest). Convert the data first, or check "
            "--config.data.path."
        )
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e}); rerun launch/convert_data.py.") from e
    if manifest.get("format") != FORMAT:
        raise DataError(
            f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}; rerun "
            "launch/convert_data.py with this version of ssl_jax."
        )
    return manifest


class RecordSource:
    """Split ``"train"`` or ``"test"`` of a records folder (see the module docstring).

    Images are decoded (PIL) and, when ``image_size`` is set or a record's size differs from
    the split's, resized bilinearly, in the pipeline's worker processes. The shards are opened
    lazily in each process (the source pickles to a path list).
    """

    def __init__(
        self, path: epath.PathLike, split: str, *, image_size: int | tuple[int, int] | None = None
    ):
        check_split(split)
        self.root = epath.Path(path).expanduser()
        manifest = read_manifest(self.root)
        splits = manifest.get("splits", {})
        if split not in splits:
            raise DataError(
                f"{self.root}: no split {split!r} in {MANIFEST} (has {sorted(splits)}); convert "
                f"it with launch/convert_data.py --splits={split}."
            )
        info = splits[split]
        missing = [s["file"] for s in info["shards"] if not (self.root / s["file"]).exists()]
        if missing:
            raise DataError(
                f"{self.root}: shard(s) {missing[:3]} of split {split!r} are missing; copy them "
                "or rerun launch/convert_data.py (it resumes)."
            )
        self.paths = [str(self.root / s["file"]) for s in info["shards"]]
        self.num_examples = int(info["count"])
        self.class_names = list(manifest.get("class_names") or [])
        self.num_classes = int(manifest["num_classes"])
        self.name = f"records:{self.root}/{split}"
        native = info.get("image_shape")
        size = as_size(image_size) if image_size is not None else None
        if size is None and not native:
            raise DataError(
                f"{self.root}: split {split!r} has images of several sizes; set "
                "--config.data.image_size=... to resize them to one."
            )
        self.image_shape = (*(size or tuple(native[:2])), 3)
        self._reader = None

    def __len__(self) -> int:
        return self.num_examples

    def __getstate__(self):
        return {**self.__dict__, "_reader": None}  # each process opens its own readers

    def _records(self):
        if self._reader is None:
            from grain import sources  # noqa: PLC0415 (opens ArrayRecord files)

            self._reader = sources.ArrayRecordDataSource(self.paths)
            if len(self._reader) != self.num_examples:
                raise DataError(
                    f"{self.root}: the shards hold {len(self._reader)} records but {MANIFEST} "
                    f"says {self.num_examples}; a shard was replaced or truncated: rerun "
                    "launch/convert_data.py."
                )
        return self._reader

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        reader = self._records()
        height, width, _ = self.image_shape
        images = np.empty((len(indices), height, width, 3), np.uint8)
        labels = np.empty(len(indices), np.int32)
        for i, index in enumerate(indices):
            where = f"{self.name} record {int(index)}"
            record = decode_record(reader[int(index)], where)
            images[i] = resize_image(record_image(record, where), (height, width))
            labels[i] = record["label"]
        return images, labels
