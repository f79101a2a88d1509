"""Write a dataset as ArrayRecord shards (``data.name=records``): ``run(config, workdir)``.

  python launch/convert_data.py --config configs/convert_data.py --workdir OUT \
    --config.data.name=folder --config.data.path=/data/imagenet [--config.shard_size=...]


Any source ``get_source`` builds (an image folder, npz files, a tfds dataset, the digits) is
written split by split into ``out`` (see :mod:`ssl_jax.data.records` for the layout). An image
folder's files are stored as they are (their encoded bytes: no quality lost, decoding later
happens in the pipeline's workers), each decoded once here so that a corrupt file stops the
conversion with its name. Other sources store raw pixels (nothing to decode when training).

Resumable: each shard is written to a temporary file and renamed when complete, and
``manifest.partial.json`` lists the finished ones with their SHA-256; rerunning the same
command skips them. ``manifest.json`` is written last, so a reader never sees a half-converted
folder. Local output folders only (ArrayRecord writes local files): copy the folder to a bucket
afterwards if needed.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import ml_collections
import numpy as np
from array_record.python import array_record_module
from etils import epath
from tqdm.auto import tqdm

from ssl_jax.data import DataError, FolderSource, get_source
from ssl_jax.data.base import decode_image_bytes
from ssl_jax.data.folder import FIX, read_image_file
from ssl_jax.data.records import (
    FORMAT,
    MANIFEST,
    WRITER_OPTIONS,
    encode_record,
    sha256,
    shard_name,
)
from ssl_jax.paths import is_remote

log = logging.getLogger(__name__)

PARTIAL = "manifest.partial.json"
CHUNK = 256  # examples read from the source at a time


def run(config: ml_collections.ConfigDict, workdir: epath.PathLike) -> dict[str, Any]:
    """Convert ``config.data``'s splits ``config.splits`` (comma-separated) into ``workdir``."""
    splits = tuple(s.strip() for s in config.splits.split(",") if s.strip())
    manifest = convert(
        config.data, workdir, splits=splits, shard_size=config.shard_size, progress=config.progress
    )
    return {
        "out": str(epath.Path(workdir).expanduser().resolve()),
        "num_classes": manifest["num_classes"],
        **{f"{s}_count": manifest["splits"][s]["count"] for s in splits},
        **{f"{s}_shards": len(manifest["splits"][s]["shards"]) for s in splits},
    }


def convert(
    data: ml_collections.ConfigDict,
    out: epath.PathLike,
    *,
    splits: tuple[str, ...] = ("train", "test"),
    shard_size: int = 10_000,
    progress: bool = True,
) -> dict[str, Any]:
    """Convert splits ``splits`` of the source ``data`` (a ``data`` config section) into
    ``out``; returns the manifest."""
    if is_remote(out):
        raise DataError(
            f"--out={out}: ArrayRecord shards are written to a local folder; convert locally, "
            "then copy the folder (e.g. gsutil -m cp -r)."
        )
    if shard_size < 1:
        raise DataError(f"--shard_size must be positive, got {shard_size}.")
    out = epath.Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    partial = _read_partial(out)
    manifest: dict[str, Any] = {"format": FORMAT, "source": _describe(data), "splits": {}}
    if partial and partial.get("source") != manifest["source"]:
        raise DataError(
            f"{out} holds a conversion of another input ({partial.get('source')}); use a new "
            "--out, or delete the folder to start again."
        )
    done = partial.get("splits", {}) if partial else {}
    for split in splits:
        source = _source(data, split)
        manifest["num_classes"] = source.num_classes
        manifest["class_names"] = list(getattr(source, "class_names", []) or [])
        manifest["splits"][split] = _convert_split(
            source, split, out, shard_size, done.get(split, {}), manifest, progress
        )
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    (out / PARTIAL).unlink(missing_ok=True)
    return manifest


def _source(data, split: str):
    if data.name == "folder":  # its files are stored as they are, whatever their sizes: an
        # image_size only turns off FolderSource's same-size check
        return FolderSource(data.path, split, image_size=data.get("image_size") or (1, 1))
    return get_source(data, split)


def _describe(data) -> dict[str, Any]:
    keys = ("name", "path", "image_size", "train_split", "test_split")
    if data.name == "tfds":
        keys += ("tfds_name", "tfds_data_dir")
    return {k: data.get(k) for k in keys if data.get(k) not in (None, "")}


def _read_partial(out: epath.Path) -> dict[str, Any] | None:
    for name in (PARTIAL, MANIFEST):
        path = out / name
        if path.exists():
            return json.loads(path.read_text())
    return None


def _convert_split(source, split, out, shard_size, done, manifest, progress) -> dict[str, Any]:
    count = len(source)
    num_shards = max(1, math.ceil(count / shard_size))
    finished = {s["file"]: s for s in done.get("shards", [])}
    info: dict[str, Any] = {"count": count, "shards": [], "image_shape": None}
    shapes: set[tuple[int, ...]] = set(map(tuple, done.get("shapes", [])))
    bar = tqdm(total=count, desc=f"convert {split}", disable=not progress, unit="img")
    for k in range(num_shards):
        name = shard_name(split, k, num_shards)
        start, stop = k * shard_size, min(count, (k + 1) * shard_size)
        path = out / name
        previous = finished.get(name)
        if previous and path.exists() and sha256(path) == previous["sha256"]:
            info["shards"].append(previous)
            bar.update(stop - start)
            continue
        shapes |= _write_shard(source, start, stop, path, bar)
        info["shards"].append({"file": name, "count": stop - start, "sha256": sha256(path)})
        info["shapes"] = sorted(map(list, shapes))
        manifest["splits"][split] = info
        (out / PARTIAL).write_text(json.dumps(manifest, indent=1) + "\n")
    bar.close()
    if len(shapes) == 1:
        info["image_shape"] = list(next(iter(shapes)))
    info.pop("shapes", None)
    return info


def _write_shard(source, start: int, stop: int, path: epath.Path, bar) -> set[tuple[int, ...]]:
    """Examples ``[start, stop)`` of ``source`` into the shard ``path`` (via a temporary
    file); returns the image shapes seen."""
    tmp = path.with_name(path.name + ".tmp")
    writer = array_record_module.ArrayRecordWriter(str(tmp), WRITER_OPTIONS)
    shapes = set()
    try:
        for chunk in range(start, stop, CHUNK):
            indices = np.arange(chunk, min(stop, chunk + CHUNK))
            for record, shape in _records(source, indices):
                writer.write(record)
                shapes.add(shape)
            bar.update(len(indices))
    finally:
        writer.close()
    tmp.rename(path)
    return shapes


def _records(source, indices: np.ndarray):
    """``(record bytes, image shape)`` of each index: a folder's file bytes (checked by
    decoding them), any other source's raw pixels."""
    if isinstance(source, FolderSource):
        for i in indices:
            file = source.files[i]
            data = read_image_file(file)
            image = decode_image_bytes(data, str(file), FIX)  # a corrupt file stops it, named
            yield encode_record(int(source.labels[i]), image=data), image.shape
        return
    images, labels = source.get(indices)
    for image, label in zip(images, labels, strict=True):
        yield encode_record(int(label), pixels=image), image.shape
