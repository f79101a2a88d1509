"""Any tensorflow-datasets image-classification dataset through `tfds.data_source` (random access).

`tfds.data_source` reads prepared ArrayRecord files and needs no TensorFlow. Preparing a dataset
(downloading and converting it) does need TensorFlow and internet: run
`tfds build NAME --file_format=array_record` on such a host and point `data_dir` at the result.
Split "train" maps to `train_split` and "test" to `test_split` (ImageNet: "validation").
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ssl_jax.data.base import as_size, check_split
from ssl_jax.data.errors import DataError


def _open(name: str, split: str, data_dir: str | None, download: bool):
    import tensorflow_datasets as tfds  # Heavy import, only when this source is used.

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(
            f"tensorflow-datasets has no dataset {name!r}; expected a name from the catalogue "
            "(https://www.tensorflow.org/datasets/catalog), e.g. 'cifar10' or 'imagenet2012'. "
            "Set --config.data.tfds_name=..."
        ) from e
    except Exception as e:  # tfds raises many types here; wrap them all with the fix.
        detail = " ".join(str(e).split())[:400]
        raise DataError(
            f"cannot open split {split!r} of tensorflow-datasets {name!r} in data_dir "
            f"{data_dir or '(tfds default, ~/tensorflow_datasets)'} ({type(e).__name__}: "
            f"{detail}). The dataset is probably not prepared there in ArrayRecord format "
            f"(download={download}). On a host with internet and tensorflow installed run "
            f"`tfds build {name} --file_format=array_record --data_dir=DIR`, copy DIR here and "
            "set --config.data.tfds_data_dir=DIR; or check the split name "
            "(data.train_split / data.test_split)."
        ) from e


class TfdsSource:
    """Split `"train"` or `"test"` of a tfds dataset as uint8 RGB images and int32 labels.

    Images that are grayscale are repeated to 3 channels. They are resized (bilinear) to
    `image_size` when it is set; otherwise to the shape of the features spec, or of record 0 when
    the spec has no fixed size, whenever a record's shape differs.

    Args:
      name: a tfds catalogue name, e.g. "cifar10", "imagenet2012".
      split: "train" or "test", mapped to `train_split` / `test_split` (any tfds split string).
      data_dir: where the prepared dataset lies (None: the tfds default).
      image_size: output size (int: square); None keeps the dataset's size.
      image_key: the feature name of the image.
      label_key: the feature name of its class label.
      download: let tfds download and prepare a missing dataset (needs internet and tensorflow).
    """

    def __init__(
        self,
        name: str,
        split: str,
        *,
        data_dir: str | None = None,
        image_size: int | tuple[int, int] | None = None,
        train_split: str = "train",
        test_split: str = "test",
        image_key: str = "image",
        label_key: str = "label",
        download: bool = False,
    ):
        check_split(split)
        tfds_split = train_split if split == "train" else test_split
        self._source = _open(name, tfds_split, data_dir, download)
        self._image_key, self._label_key = image_key, label_key
        where = f"tfds {name!r} split {tfds_split!r}"
        features = self._source.dataset_info.features
        missing = [k for k in (image_key, label_key) if k not in features]
        if missing:
            raise DataError(
                f"{where}: no feature(s) {missing}; found features {sorted(features.keys())}. "
                "Expected an image and a class label; set image_key / label_key to the right ones."
            )
        num_classes = getattr(features[label_key], "num_classes", None)
        if not num_classes:
            raise DataError(
                f"{where}: feature {label_key!r} is {type(features[label_key]).__name__}, expected "
                "a ClassLabel with num_classes (an image-classification dataset)."
            )
        if len(self._source) == 0:
            raise DataError(f"{where}: the split is empty; expected at least one example.")
        self.num_classes = int(num_classes)
        self.name = f"tfds:{name}/{tfds_split}"
        self._where = where
        if image_size is not None:
            size = as_size(image_size)
        else:
            spec = tuple(features[image_key].shape or ())
            if len(spec) >= 2 and spec[0] is not None and spec[1] is not None:
                size = (int(spec[0]), int(spec[1]))
            else:
                size = self._image(self._source[0], 0).shape[:2]
        self.image_shape = (*size, 3)

    def _image(self, record: dict, index: int) -> np.ndarray:
        image = np.asarray(record[self._image_key])
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise DataError(
                f"{self._where}: record {index} has image {image.dtype} {image.shape}, expected "
                "uint8 (H, W, 3) or (H, W[, 1])."
            )
        if image.ndim == 2:
            image = image[..., None]
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        return image

    def __len__(self) -> int:
        return len(self._source)

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        height, width, _ = self.image_shape
        images = np.empty((len(indices), height, width, 3), np.uint8)
        labels = np.empty(len(indices), np.int32)
        for i, index in enumerate(indices):
            record = self._source[int(index)]
            image = self._image(record, int(index))
            if image.shape[:2] != (height, width):
                image = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
            images[i] = image
            labels[i] = int(record[self._label_key])
        return images, labels
