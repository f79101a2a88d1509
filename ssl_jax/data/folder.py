"""An image folder with one sub-folder per class, decoded lazily with PIL.

Layouts:
  * `path/train/<class>/*` and `path/test/<class>/*` (or `path/val/<class>/*`): split "train" is
    `path/train`, split "test" is `path/test`, else `path/val`.
  * `path/<class>/*` (no `path/train`): a fixed holdout. Within each class the files are sorted
    by name and every 10th one (position % 10 == 9) is "test", the rest "train".

Class ids are the sorted class-folder names of the training folder (0, 1, ...); a test class
folder must have a training counterpart. Files with extensions jpg, jpeg, png, bmp, gif or webp
(any case) directly inside a class folder are used; other files and hidden files are ignored.
Images are converted to RGB and, when `image_size` is given, resized bilinearly. Without
`image_size` all images must have the size of the first one. The folder may be a URI
(`gs://bucket/images`), read through `etils.epath`.
"""

from __future__ import annotations

import io

import numpy as np
from etils import epath
from PIL import Image

from ssl_jax.data.base import as_size, check_split, decode_image_bytes, resize_image
from ssl_jax.data.errors import DataError
from ssl_jax.paths import is_remote

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
HOLDOUT_PERIOD = 10

# Deleting a file shifts every later file of its class: the train/test holdout (by sorted
# position) and the data order change, so a checkpointed run can no longer resume exactly.
FIX = (
    "replace it with a valid image and rerun to resume. Deleting it instead changes the "
    "split (files move between train and test) and the data order: start a new run then."
)


def _class_folders(root: epath.Path) -> list[epath.Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        found = sorted(p.name for p in root.iterdir())[:20]
        raise DataError(
            f"{root}: no class folders; found {found or 'nothing'}. Expected one sub-folder per "
            f"class holding its images, e.g. {root}/cat/001.jpg, {root}/dog/002.png."
        )
    return folders


def _image_files(folder: epath.Path) -> list[epath.Path]:
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        found = sorted(p.name for p in folder.iterdir())[:20]
        raise DataError(
            f"{folder}: class folder has no images; found {found or 'nothing'}. Expected files "
            f"with extensions {sorted(IMAGE_EXTENSIONS)}. Add images or remove the folder."
        )
    return files


def _open_image(path: epath.Path) -> Image.Image:
    """PIL's lazy image of a local file by name (PIL's errors name it), of a URI by its bytes."""
    return Image.open(io.BytesIO(epath.Path(path).read_bytes()) if is_remote(path) else path)


def read_image_file(path: epath.Path) -> bytes:
    """The bytes of an image file; ``DataError`` naming it if it cannot be read."""
    try:
        return epath.Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({type(e).__name__}: {e}); {FIX}") from e


def decode_image(path: epath.Path) -> np.ndarray:
    """Decodes one image file to uint8 RGB `(H, W, 3)`; `DataError` naming the file if it fails."""
    return decode_image_bytes(read_image_file(path), str(path), FIX)


def _resolve_split(root: epath.Path, split: str) -> tuple[epath.Path, epath.Path, bool]:
    """Returns `(train_root, split_root, holdout)`."""
    train_root = root / "train"
    if not train_root.is_dir():
        return root, root, True
    if split == "train":
        return train_root, train_root, False
    for name in ("test", "val"):
        if (root / name).is_dir():
            return train_root, root / name, False
    raise DataError(
        f"{root}: has a train/ folder but neither test/ nor val/ for split 'test'. Add "
        f"{root}/test/<class>/... or put the class folders directly in {root} (holdout split)."
    )


class FolderSource:
    """Split `"train"` or `"test"` of an image folder (layouts in the module docstring)."""

    def __init__(
        self,
        path: epath.PathLike,
        split: str,
        *,
        image_size: int | tuple[int, int] | None = None,
    ):
        check_split(split)
        root = epath.Path(path).expanduser()
        if not root.is_dir():
            raise DataError(
                f"image folder {root} does not exist or is not a folder; expected "
                f"{root}/<class>/<image> or {root}/train/<class>/<image>. "
                "Set --config.data.path=/path/to/folder."
            )
        train_root, split_root, holdout = _resolve_split(root, split)
        self.class_names = [p.name for p in _class_folders(train_root)]
        class_ids = {name: i for i, name in enumerate(self.class_names)}
        files, labels = [], []
        for folder in _class_folders(split_root):
            if folder.name not in class_ids:
                raise DataError(
                    f"{folder}: class {folder.name!r} has no folder in {train_root}; expected "
                    f"one of {self.class_names}. Test classes must also exist for training."
                )
            class_files = _image_files(folder)
            if holdout:
                class_files = [
                    f
                    for i, f in enumerate(class_files)
                    if (i % HOLDOUT_PERIOD == HOLDOUT_PERIOD - 1) == (split == "test")
                ]
            files += class_files
            labels += [class_ids[folder.name]] * len(class_files)
        if not files:
            raise DataError(
                f"{split_root}: split {split!r} is empty. With the holdout layout a class needs "
                f"at least {HOLDOUT_PERIOD} images to give one to 'test'; add images or use the "
                "train/ and test/ layout."
            )
        self.files = files
        self.labels = np.asarray(labels, np.int32)
        self.num_classes = len(self.class_names)
        self.name = f"folder:{root}/{split}"
        first = decode_image(files[0])
        self._resize = image_size is not None
        self._size = as_size(image_size) if self._resize else first.shape[:2]
        if not self._resize:
            # Fail fast on mixed sizes: the first image of every class (reads headers only).
            first_of_class = np.unique(self.labels, return_index=True)[1]
            for index in first_of_class:
                self._check_size(files[index], self._read_size(files[index]))
        self.image_shape = (*self._size, 3)

    @staticmethod
    def _read_size(path: epath.Path) -> tuple[int, int]:
        try:
            with _open_image(path) as image:
                return image.height, image.width
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(
                f"{path}: cannot open the image ({type(e).__name__}: {e}). The file is corrupt "
                f"or not an image; {FIX}"
            ) from e

    def _check_size(self, path: epath.Path, size: tuple[int, int]) -> None:
        if size != self._size:
            raise DataError(
                f"{path}: image is {size[0]}x{size[1]} (HxW) but {self.files[0]} is "
                f"{self._size[0]}x{self._size[1]}; images of differing sizes need a common size. "
                "Set data.image_size (e.g. --config.data.image_size=224) to resize them."
            )

    def __len__(self) -> int:
        return len(self.files)

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        height, width = self._size
        images = np.empty((len(indices), height, width, 3), np.uint8)
        for i, index in enumerate(indices):
            path = self.files[index]
            image = decode_image(path)
            if not self._resize:
                self._check_size(path, image.shape[:2])
            images[i] = resize_image(image, (height, width))
        return images, self.labels[indices]
