"""The embedded default: scikit-learn's 1,797 real 8x8 handwritten digits (no download).

Pixel values 0..16 become uint8 `round(x * 255 / 16)`, are resized bilinearly to `image_size`
and repeated to 3 channels. The split is a fixed stratified 80/20 holdout
(`train_test_split(test_size=0.2, stratify=labels, random_state=0)`): 1,437 train, 360 test.
"""

from __future__ import annotations

import numpy as np

from ssl_jax.data.base import ArraySource, check_split


def make_digits_source(split: str, *, image_size: int | tuple[int, int] = 32) -> ArraySource:
    """The sklearn digits split `"train"` or `"test"` as uint8 RGB images, 10 classes."""
    from sklearn.datasets import load_digits  # Imported here: scikit-learn takes ~1 s to import.
    from sklearn.model_selection import train_test_split

    check_split(split)
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int32)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0
    )
    idx = train_idx if split == "train" else test_idx
    return ArraySource(
        images[idx], labels[idx], num_classes=10, name=f"digits/{split}", image_size=image_size
    )
