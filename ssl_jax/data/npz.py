"""A folder of `.npz` files, split by file-name prefix (`train_*.npz`, `test_*.npz`).

Each file holds `images` (uint8 `(N, H, W, C)` with C in {1, 3}, or `(N, H, W)`) and `labels`
(integer `(N,)`). A split is the concatenation of its files in sorted name order, loaded whole
into memory (CIFAR-10's 50,000 train images take ~150 MB and ~2 s). The folder may be a URI
(``gs://bucket/cifar10``), read through ``etils.epath``.
"""

from __future__ import annotations

import zipfile
import zlib

import numpy as np
from etils import epath

from ssl_jax.data.base import ArraySource, check_images, check_labels, check_split
from ssl_jax.data.errors import DataError

_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def _read_npz(path: epath.Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as npz:
            missing = [k for k in ("images", "labels") if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: missing key(s) {missing}; found keys {sorted(npz.files)}, expected "
                    "'images' (uint8 (N, H, W, 3)) and 'labels' (integer (N,)). Save with "
                    "np.savez(path, images=..., labels=...)."
                )
            return npz["images"], npz["labels"]
    except _READ_ERRORS as e:
        raise DataError(
            f"{path}: cannot read it as a .npz file ({type(e).__name__}: {e}). The file is corrupt "
            "or not written by np.savez; re-create or re-copy it."
        ) from e


def make_npz_source(
    path: epath.PathLike,
    split: str,
    *,
    image_size: int | tuple[int, int] | None = None,
    num_classes: int | None = None,
) -> ArraySource:
    """Loads split `"train"` (`train_*.npz`) or `"test"` (`test_*.npz`) of the folder `path`.

    `num_classes` defaults to the largest label of the split plus one; set it when a split may
    lack the last classes, so that train and test agree.
    """
    check_split(split)
    folder = epath.Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"npz data folder {folder} does not exist or is not a folder; expected a folder with "
            "train_*.npz and test_*.npz files. Set --config.data.path=/path/to/folder."
        )
    files = sorted(folder.glob(f"{split}_*.npz"))
    if not files:
        found = sorted(p.name for p in folder.iterdir())
        shown = found[:20] + (["..."] if len(found) > 20 else [])
        raise DataError(
            f"{folder}: no files {split}_*.npz for split {split!r}; found {shown or 'nothing'}. "
            f"Name the files of this split {split}_00.npz, {split}_01.npz, ..."
        )
    all_images, all_labels = [], []
    for file in files:
        images, labels = _read_npz(file)
        check_images(images, str(file))
        check_labels(labels, len(images), str(file), num_classes)
        if all_images and images.shape[1:] != all_images[0].shape[1:]:
            raise DataError(
                f"{file}: images have shape {images.shape[1:]} per image but {files[0]} has "
                f"{all_images[0].shape[1:]}; all files of a split need the same image shape. "
                "Resize them when writing the files."
            )
        all_images.append(images)
        all_labels.append(labels)
    images = np.concatenate(all_images) if len(all_images) > 1 else all_images[0]
    labels = np.concatenate(all_labels) if len(all_labels) > 1 else all_labels[0]
    return ArraySource(
        images,
        labels,
        num_classes=num_classes,
        name=f"npz:{folder}/{split}",
        image_size=image_size,
    )
