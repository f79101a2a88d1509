"""A folder of `.npz` files, split by file-name prefix (`train_*.npz`, `test_*.npz`).

Each file holds `images` (uint8 `(N, H, W, C)` with C in {1, 3}, or `(N, H, W)`) and `labels`
(integer `(N,)`). A split is the concatenation of its files in sorted name order. Images are
memory-mapped, not loaded: the pages a batch touches are read when it is made, and every
data worker shares the operating system's page cache.

- A file written by `np.savez` stores its arrays uncompressed: its `images` are mapped where
  they lie in the file.
- A compressed file (`np.savez_compressed`, as the CIFAR-10 copy in ../shared/data) or a
  remote one (``gs://bucket/cifar10``, read through ``etils.epath``) is first extracted once to
  an `.npy` file in the cache, ``$SSL_JAX_CACHE`` or ``~/.cache/ssl_jax``, under ``npz/`` and
  a key of the file's path and the array's size and CRC-32; later runs map that.

Labels are small and read whole. With `image_size` set, images are resized when their batch
is made (in the pipeline's workers).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib

import numpy as np
from etils import epath

from ssl_jax.data.base import (
    as_size,
    check_images,
    check_labels,
    check_split,
    resize_images,
    to_rgb,
)
from ssl_jax.data.errors import DataError
from ssl_jax.paths import is_remote

_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
KEYS = ("images", "labels")


def cache_root() -> epath.Path:
    return epath.Path(os.environ.get("SSL_JAX_CACHE", "~/.cache/ssl_jax")).expanduser() / "npz"


def _unreadable(path, e: BaseException) -> DataError:
    return DataError(
        f"{path}: cannot read it as a .npz file ({type(e).__name__}: {e}). The file is corrupt "
        "or not written by np.savez; re-create or re-copy it."
    )


def _members(path: epath.Path) -> dict[str, zipfile.ZipInfo]:
    try:
        with path.open("rb") as f, zipfile.ZipFile(f) as z:
            members = {info.filename.removesuffix(".npy"): info for info in z.infolist()}
    except _READ_ERRORS as e:
        raise _unreadable(path, e) from e
    missing = [k for k in KEYS if k not in members]
    if missing:
        raise DataError(
            f"{path}: missing key(s) {missing}; found keys {sorted(members)}, expected "
            "'images' (uint8 (N, H, W, 3)) and 'labels' (integer (N,)). Save with "
            "np.savez(path, images=..., labels=...)."
        )
    return members


def _read_labels(path: epath.Path) -> np.ndarray:
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as npz:
            return npz["labels"]
    except _READ_ERRORS as e:
        raise _unreadable(path, e) from e


def _map_stored(path: epath.Path, info: zipfile.ZipInfo) -> np.ndarray:
    """``images`` of an uncompressed local `.npz`, memory-mapped where they lie in it."""
    with path.open("rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        if header[:4] != b"PK\x03\x04":
            raise ValueError("bad local file header")
        name_length = int.from_bytes(header[26:28], "little")
        extra_length = int.from_bytes(header[28:30], "little")
        f.seek(info.header_offset + 30 + name_length + extra_length)
        shape, fortran, dtype = _npy_header(f)
        offset = f.tell()
    if fortran:
        raise ValueError("Fortran-ordered images")
    if offset + int(np.prod(shape)) * dtype.itemsize > path.stat().length:
        raise EOFError("the images are truncated")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _extracted(path: epath.Path, info: zipfile.ZipInfo) -> epath.Path:
    """The cache's `.npy` copy of ``path``'s ``images``, extracted on first use (keyed by the
    path and the member's size and CRC-32, which the zip directory holds)."""
    key = hashlib.sha1(f"{path}|{info.file_size}|{info.CRC}".encode()).hexdigest()[:20]
    target = cache_root() / key / "images.npy"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"images.npy.tmp{os.getpid()}")
        with path.open("rb") as f, zipfile.ZipFile(f) as z, z.open("images.npy") as src:
            with tmp.open("wb") as out:
                while chunk := src.read(1 << 22):
                    out.write(chunk)
        tmp.rename(target)
    return target


def _map_images(path: epath.Path, info: zipfile.ZipInfo) -> np.ndarray:
    try:
        if info.compress_type == zipfile.ZIP_STORED and not is_remote(path):
            return _map_stored(path, info)
        return np.load(_extracted(path, info), mmap_mode="r", allow_pickle=False)
    except _READ_ERRORS as e:
        raise _unreadable(path, e) from e


class NpzSource:
    """Split `"train"` or `"test"` of an npz folder, memory-mapped (see the module docstring).

    `num_classes` defaults to the largest label of the split plus one; set it when a split may
    lack the last classes, so that train and test agree. Without `image_size` (no resizing) a
    batch is only rows read from the mapped files: ``in_memory``, the pipeline uses a thread.
    """

    def __init__(
        self,
        path: epath.PathLike,
        split: str,
        *,
        image_size: int | tuple[int, int] | None = None,
        num_classes: int | None = None,
    ):
        check_split(split)
        folder = epath.Path(path).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"npz data folder {folder} does not exist or is not a folder; expected a folder "
                "with train_*.npz and test_*.npz files. Set --config.data.path=/path/to/folder."
            )
        files = sorted(folder.glob(f"{split}_*.npz"))
        if not files:
            found = sorted(p.name for p in folder.iterdir())
            shown = found[:20] + (["..."] if len(found) > 20 else [])
            raise DataError(
                f"{folder}: no files {split}_*.npz for split {split!r}; found "
                f"{shown or 'nothing'}. Name the files of this split {split}_00.npz, "
                f"{split}_01.npz, ..."
            )
        self.files = files
        self._infos = [_members(file)["images"] for file in files]
        self._images: list[np.ndarray] | None = None
        all_labels = []
        for file, images in zip(files, self._open(), strict=True):
            labels = _read_labels(file)
            check_images(images, str(file))  # dtype and shape only: nothing is read
            check_labels(labels, len(images), str(file), num_classes)
            first = self._images[0]
            if images.shape[1:] != first.shape[1:]:
                raise DataError(
                    f"{file}: images have shape {images.shape[1:]} per image but {files[0]} "
                    f"has {first.shape[1:]}; all files of a split need the same image shape. "
                    "Resize them when writing the files."
                )
            all_labels.append(labels)
        self.labels = np.concatenate(all_labels).astype(np.int32)
        self.name = f"npz:{folder}/{split}"
        if num_classes is None and split == "train":
            check_dense_labels(self.labels, self.name)
        self.num_classes = (
            int(num_classes) if num_classes is not None else int(self.labels.max()) + 1
        )
        self.starts = np.cumsum([0] + [len(images) for images in self._images])
        native = tuple(int(n) for n in self._images[0].shape[1:3])
        height, width = as_size(image_size) if image_size is not None else native
        self._size = None if (height, width) == native else (height, width)
        self.image_shape = (height, width, 3)
        self.in_memory = self._size is None  # no resizing: a batch is rows of mapped files

    def _open(self) -> list[np.ndarray]:
        if self._images is None:
            self._images = [
                _map_images(file, info) for file, info in zip(self.files, self._infos, strict=True)
            ]
        return self._images

    def __getstate__(self):
        return {**self.__dict__, "_images": None}  # each process maps the files itself

    def __len__(self) -> int:
        return int(self.starts[-1])

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        files = self._open()
        which = np.searchsorted(self.starts, indices, side="right") - 1
        first = files[0]
        images = np.empty((len(indices), *first.shape[1:]), np.uint8)
        for k in np.unique(which):
            rows = which == k
            images[rows] = files[k][indices[rows] - self.starts[k]]
        images = to_rgb(images)
        if self._size is not None:
            images = resize_images(images, self._size)
        return images, self.labels[indices]


def check_dense_labels(labels: np.ndarray, where: str) -> None:
    """Class ids must be 0 .. K-1, each present, unless ``data.num_classes`` says otherwise:
    a stray id (255) or sparse ids (0, 1000, ...) would silently make a K of thousands."""
    present, counts = np.unique(labels, return_counts=True)
    if len(present) == int(present.max()) + 1:
        return
    missing = sorted(set(range(int(present.max()) + 1)) - set(present.tolist()))
    rare = [f"{int(c)} ({int(n)} images)" for c, n in zip(present, counts, strict=True) if n <= 3]
    rare = ", ".join(rare) if len(rare) < len(present) / 2 else ""  # strays among common ids
    raise DataError(
        f"{where}: the labels are {len(present)} distinct ids up to {int(present.max())}, so "
        f"{len(missing)} ids in between have no image (first: {missing[:5]})"
        f"{'; rare ids: ' + rare if rare else ''}. Remap the labels to 0..K-1, fix the stray "
        f"ones, or set --config.data.num_classes={int(present.max()) + 1} to keep sparse ids "
        "deliberately."
    )


def check_test_classes(train: NpzSource, test: NpzSource) -> None:
    """Every class of the test split has training images."""
    unseen = sorted(set(np.unique(test.labels).tolist()) - set(np.unique(train.labels).tolist()))
    if unseen:
        raise DataError(
            f"{test.name}: label(s) {unseen[:10]} appear in the test split but not in "
            f"{train.name}; every test class needs training images. Fix the labels or the "
            "split."
        )


def make_npz_source(
    path: epath.PathLike,
    split: str,
    *,
    image_size: int | tuple[int, int] | None = None,
    num_classes: int | None = None,
) -> NpzSource:
    """Split `"train"` (`train_*.npz`) or `"test"` (`test_*.npz`) of the folder `path`.

    Without `num_classes` the training labels must be 0..K-1, each present; the test split's
    classes must all have training images (its train split's labels are read to check).
    `num_classes` defaults to the training split's K, for the test split too."""
    source = NpzSource(path, split, image_size=image_size, num_classes=num_classes)
    if split == "test":
        train = NpzSource(path, "train", num_classes=num_classes)
        check_test_classes(train, source)
        if num_classes is None:
            source.num_classes = train.num_classes
    return source
