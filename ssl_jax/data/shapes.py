"""What a source's batches look like without reading it: for ahead-of-time compilation.

:func:`describe_source` gives the shape of a split (image shape, classes, size) from the data
section alone, so a program can be planned for a dataset that is not on this machine
(``ssl_jax.programs.plan``). Only the embedded digits are opened (they ship with
scikit-learn); tensorflow-datasets names come from :data:`KNOWN_TFDS`, and any other source
gets :data:`NOMINAL_EXAMPLES` examples and :data:`NOMINAL_CLASSES` classes, marked as such.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ssl_jax.data.base import as_size, check_split
from ssl_jax.data.digits import make_digits_source
from ssl_jax.data.errors import DataError
from ssl_jax.data.records import RecordSource

# Published split sizes (tensorflow-datasets catalogue) and native image sizes (None: varies).
KNOWN_TFDS: dict[str, dict[str, Any]] = {
    "imagenet2012": dict(
        splits={"train": 1_281_167, "validation": 50_000}, num_classes=1000, image_size=None
    ),
    "cifar10": dict(splits={"train": 50_000, "test": 10_000}, num_classes=10, image_size=32),
    "cifar100": dict(splits={"train": 50_000, "test": 10_000}, num_classes=100, image_size=32),
    "stl10": dict(
        splits={"train": 5_000, "test": 8_000, "unlabelled": 100_000},
        num_classes=10,
        image_size=96,
    ),
}
NOMINAL_EXAMPLES = 1_281_167  # ImageNet's train split: only the schedule's length depends on it
NOMINAL_CLASSES = 1000  # only the online linear probe's width depends on it


@dataclasses.dataclass(frozen=True)
class SourceShape:
    """A split's shape: batches are ``images`` uint8 ``(B, *image_shape)``, ``labels`` int32
    ``(B,)``. ``known`` is False when ``num_examples`` / ``num_classes`` are nominal."""

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    num_examples: int
    known: bool
    note: str


def describe_source(data: Any, split: str = "train") -> SourceShape:
    """The shape of split ``"train"`` or ``"test"`` of the source ``data`` names, read from the
    data section only (see the module docstring); ``DataError`` when the image size cannot be
    known without the data (set ``data.image_size``)."""
    check_split(split)
    name = getattr(data, "name", None)
    image_size = getattr(data, "image_size", None)
    if name == "digits":
        source = make_digits_source(split, image_size=32 if image_size is None else image_size)
        return _opened(source, "opened (embedded)")
    if name == "tfds":
        tfds_name = getattr(data, "tfds_name", "")
        tfds_split = getattr(data, f"{split}_split", None) or split
        known = KNOWN_TFDS.get(tfds_name)
        if known is not None and tfds_split in known["splits"]:
            size = image_size if image_size is not None else known["image_size"]
            return _shape(
                f"tfds:{tfds_name}/{tfds_split}",
                size,
                known["num_classes"],
                known["splits"][tfds_split],
                True,
                "published split size (tensorflow-datasets catalogue), not opened",
            )
        return _shape(f"tfds:{tfds_name}/{tfds_split}", image_size, None, None, False, "")
    if name == "records":  # the manifest has the counts and shapes: no shard is opened
        source = RecordSource(getattr(data, "path", ""), split, image_size=image_size)
        return _opened(source, "its manifest.json (no shard opened)")
    if name in ("npz", "folder"):
        return _shape(f"{name}:{getattr(data, 'path', '')}", image_size, None, None, False, "")
    if name in ("jsonl", "text"):
        raise DataError(
            f"data.name={name!r}: text sources have no shape without their tokenizer; planning "
            "takes image sources only so far."
        )
    raise DataError(f"Unknown data source {name!r}; set --config.data.name=...")


def _opened(source, note: str) -> SourceShape:
    """The shape of a source that could be opened here (its counts are known)."""
    return SourceShape(source.name, source.image_shape, source.num_classes, len(source), True, note)


def _shape(name, image_size, num_classes, num_examples, known, note) -> SourceShape:
    if image_size is None:
        raise DataError(
            f"{name}: the image size is not known without reading the data; set "
            "--config.data.image_size=... (the size batches are resized to)."
        )
    height, width = as_size(image_size)
    if not known:
        note = (
            f"not opened: nominal {NOMINAL_EXAMPLES} examples (sets only the schedule's length) "
            f"and {NOMINAL_CLASSES} classes (only the online linear probe's width)"
        )
    return SourceShape(
        name,
        (height, width, 3),
        NOMINAL_CLASSES if num_classes is None else num_classes,
        NOMINAL_EXAMPLES if num_examples is None else num_examples,
        known,
        note,
    )
