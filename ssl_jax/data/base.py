"""The `Source` protocol, an in-memory `ArraySource`, and image helpers shared by all sources.

A source gives random access to one split: `get(indices)` returns uint8 RGB images
`(k, H, W, 3)` and int32 labels `(k,)`. Every source of a split has one fixed image shape; the
accelerator does augmentation, so sources only decode, convert to RGB and resize.
"""

from __future__ import annotations

import io
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from ssl_jax.data.errors import DataError

SPLITS = ("train", "test")


@runtime_checkable
class Source(Protocol):
    """Random access to the examples of one split."""

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]

    def __len__(self) -> int: ...

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns `(images uint8 (k, H, W, 3), labels int32 (k,))` for `indices` in that order."""
        ...


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}: expected one of {SPLITS}.")


def as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """`image_size` as `(height, width)`; an int means a square image."""
    if isinstance(size, int | np.integer):
        size = (int(size), int(size))
    height, width = (int(s) for s in size)
    if height <= 0 or width <= 0:
        raise DataError(f"image_size must be positive, found {size}; set data.image_size=32, say.")
    return height, width


def to_rgb(images: np.ndarray) -> np.ndarray:
    """uint8 `(N, H, W)`, `(N, H, W, 1)` or `(N, H, W, 3)` -> `(N, H, W, 3)` (gray repeated)."""
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


def decode_image_bytes(data: bytes, where: str, fix: str = "") -> np.ndarray:
    """Decodes an encoded image (JPEG, PNG, ...) to uint8 RGB ``(H, W, 3)``; ``DataError``
    naming ``where`` (a file, a record) if it fails, followed by ``fix``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(
            f"{where}: cannot decode the image ({type(e).__name__}: {e}). The file is corrupt "
            f"or not an image{'; ' + fix if fix else '.'}"
        ) from e


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (PIL) of one uint8 ``(H, W[, C])`` image to ``(height, width)``; the
    image itself when it already has that size."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def resize_images(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize (PIL, one image at a time) of uint8 `(N, H, W[, C])` to `size`.

    Returns the input unchanged when it already has that size. Channels (1 or 3, or none) are kept.
    """
    height, width = as_size(size)
    if images.shape[1:3] == (height, width):
        return images
    squeeze = images.ndim == 4 and images.shape[-1] == 1
    flat = images[..., 0] if squeeze else images
    out = np.empty((len(flat), height, width, *flat.shape[3:]), np.uint8)
    for i, image in enumerate(flat):
        out[i] = resize_image(image, (height, width))
    return out[..., None] if squeeze else out


def check_images(images: np.ndarray, where: str) -> None:
    """Raises `DataError` unless `images` is uint8 `(N, H, W)` or `(N, H, W, 1|3)`."""
    if images.dtype != np.uint8:
        raise DataError(
            f"{where}: images have dtype {images.dtype}, expected uint8 (values 0..255). "
            "Convert them, e.g. np.clip(x * 255, 0, 255).round().astype(np.uint8) for floats "
            "in [0, 1]."
        )
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise DataError(
            f"{where}: images have shape {images.shape}, expected (N, H, W, 3) RGB, "
            "(N, H, W, 1) or (N, H, W) grayscale."
        )


def check_labels(
    labels: np.ndarray, num_images: int, where: str, num_classes: int | None = None
) -> None:
    """Raises `DataError` unless `labels` are `num_images` integers in `[0, num_classes)`."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{where}: labels have dtype {labels.dtype}, expected an integer dtype "
            "(class ids 0..num_classes-1)."
        )
    if labels.shape != (num_images,):
        raise DataError(
            f"{where}: labels have shape {labels.shape} but there are {num_images} images; "
            f"expected one label per image, shape ({num_images},)."
        )
    if num_images and labels.min() < 0:
        raise DataError(f"{where}: found label {labels.min()}, expected labels >= 0.")
    if num_classes is not None and num_images and labels.max() >= num_classes:
        raise DataError(
            f"{where}: found label {labels.max()} but num_classes is {num_classes}; "
            f"expected labels in [0, {num_classes})."
        )


class ArraySource:
    """A split held in memory as arrays, already decoded (``in_memory``: the pipeline slices it
    in a thread, no worker processes).

    Args:
      images: uint8 `(N, H, W, 3)`, `(N, H, W, 1)` or `(N, H, W)`; gray is repeated to RGB on `get`.
      labels: integer `(N,)` in `[0, num_classes)`.
      num_classes: defaults to `labels.max() + 1`.
      name: used in messages and reports.
      image_size: resize (bilinear) to this size once, at construction, if it differs.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        num_classes: int | None = None,
        name: str = "arrays",
        image_size: int | tuple[int, int] | None = None,
    ):
        images, labels = np.asarray(images), np.asarray(labels)
        check_images(images, name)
        check_labels(labels, len(images), name, num_classes)
        if len(images) == 0:
            raise DataError(f"{name}: no images (shape {images.shape}); expected at least one.")
        if image_size is not None:
            images = resize_images(images, image_size)
        self.in_memory = True
        self.images = images
        self.labels = labels.astype(np.int32)
        self.num_classes = int(num_classes) if num_classes is not None else int(labels.max()) + 1
        self.name = name
        self.image_shape = (int(images.shape[1]), int(images.shape[2]), 3)

    def __len__(self) -> int:
        return len(self.images)

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        return to_rgb(self.images[indices]), self.labels[indices]
