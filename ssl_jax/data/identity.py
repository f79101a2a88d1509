"""Which dataset a ``data`` config section names: its identifying fields and a short label.

The identity is what an encoder export's spec records as the data it was trained on, what
each program writes into its ``results.json`` (``dataset``), and what the adaptation
programs rebuild their ``data`` section from when ``data.name`` is empty. It leaves out how
the data is read (``batch_size``, ``workers``) and what a program does with it
(``label_fraction``, ``val_fraction``).
"""

from collections.abc import Mapping
from typing import Any

# The data section's fields that say which images and labels a run sees (ssl_jax/config.py
# data_defaults); the tfds ones only count for data.name=tfds.
FIELDS = (
    "name",
    "path",
    "tfds_name",
    "tfds_data_dir",
    "image_size",
    "num_classes",
    "train_split",
    "test_split",
)
TFDS_FIELDS = ("tfds_name", "tfds_data_dir")
_STRINGS = ("name", "path", "tfds_name", "tfds_data_dir", "train_split", "test_split")


def identify(data: Any) -> dict:
    """The identifying fields of the data section ``data`` (a ConfigDict or a mapping):
    those of :data:`FIELDS` that are set (neither None nor ""), the tfds ones only when
    ``name`` is ``"tfds"``. E.g. ``{"name": "digits", "image_size": 8, "train_split":
    "train", "test_split": "test"}``."""
    get = data.get if isinstance(data, Mapping) else lambda k: getattr(data, k, None)
    out = {}
    for key in FIELDS:
        value = get(key)
        if value in (None, "") or (key in TFDS_FIELDS and get("name") != "tfds"):
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def check_identity(identity: Any) -> dict:
    """``identity`` validated (a recorded dataset, e.g. an export spec's ``data``): a mapping
    of :data:`FIELDS` with a non-empty ``name``; ``ValueError`` naming the first bad field."""
    if not isinstance(identity, Mapping):
        raise ValueError(f"a dataset is a mapping of {list(FIELDS)}, got {identity!r}.")
    unknown = sorted(set(identity) - set(FIELDS))
    if unknown:
        raise ValueError(f"dataset fields {unknown} are unknown; valid: {list(FIELDS)}.")
    if not isinstance(identity.get("name"), str) or not identity["name"]:
        raise ValueError(f"a dataset needs a name (data.name), got {identity.get('name')!r}.")
    for key, value in identity.items():
        if key in _STRINGS and not isinstance(value, str):
            raise ValueError(f"dataset {key} must be a string, got {value!r}.")
        if key in ("image_size", "num_classes") and not _positive(value, pair=key == "image_size"):
            raise ValueError(f"dataset {key} must be a positive int, got {value!r}.")
    return identify(identity)


def _positive(value, *, pair: bool) -> bool:
    if pair and isinstance(value, list | tuple) and len(value) == 2:
        return all(_positive(v, pair=False) for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def dataset_label(identity: Mapping[str, Any] | None) -> str:
    """A short name for tables and logs: ``digits``, ``cifar10`` (tfds), ``npz:cifar10`` (a
    path's last part), then the image size if set (``digits 8px``); ``unknown data`` for
    None (results written before programs recorded their dataset)."""
    if not identity:
        return "unknown data"
    name = identity.get("name", "?")
    if name == "tfds":
        label = str(identity.get("tfds_name", "tfds"))
    elif identity.get("path"):
        label = f"{name}:{str(identity['path']).rstrip('/').rsplit('/', 1)[-1]}"
    else:
        label = str(name)
    size = identity.get("image_size")
    if size:
        label += f" {'x'.join(map(str, size)) if isinstance(size, list | tuple) else size}px"
    return label
