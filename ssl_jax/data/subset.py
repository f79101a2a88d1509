"""Labelled subsets: class-balanced label fractions and validation splits carved from train.

SimCLR's semi-supervised protocol (Chen et al. 2020, appendix B.5) trains on 1% and 10% of
ImageNet's labels, "sampled in a class-balanced way", the same subset for every method. Here a
fraction ``f`` keeps ``max(1, round(f * n_c))`` images of each class ``c`` (``n_c`` images),
drawn by a seeded permutation, and the chosen indices are written into the workdir
(:func:`save_indices`) so every encoder is compared on exactly the same images. A validation
split is carved from the training split the same way (class-balanced, seeded), for choosing
hyperparameters or the epoch without ever looking at the test split.

The programs write both into the workdir under the names :data:`LABEL_SUBSET`
(``label_subset.json``) and :data:`VAL_SPLIT` (``val_split.json``), as indices into the
training split.
"""

import json

import jax
import numpy as np
from etils import epath

from ssl_jax.data.base import Source
from ssl_jax.data.errors import DataError

LABEL_SUBSET = "label_subset"  # WORKDIR/label_subset.json: the labelled subset of train
VAL_SPLIT = "val_split"  # WORKDIR/val_split.json: the validation split carved from train


def source_labels(source: Source, *, chunk: int = 4096) -> np.ndarray:
    """All labels of ``source`` (its ``labels`` array when it has one, else read in chunks)."""
    labels = getattr(source, "labels", None)
    if labels is not None:
        return np.asarray(labels, np.int32)
    parts = [
        source.get(np.arange(i, min(i + chunk, len(source))))[1]
        for i in range(0, len(source), chunk)
    ]
    return np.concatenate(parts).astype(np.int32) if parts else np.zeros((0,), np.int32)


def _check_fraction(fraction: float, name: str) -> float:
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"{name}={fraction} must be in (0, 1] (e.g. 0.01 for 1% of the labels).")
    return fraction


def class_balanced_subset(labels: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """Sorted indices of ``max(1, round(fraction * n_c))`` images of every class, seeded.

    ``fraction=1`` returns every index. Raises ``ValueError`` for a fraction outside (0, 1].
    """
    fraction = _check_fraction(fraction, "data.label_fraction")
    labels = np.asarray(labels)
    if fraction == 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        keep = max(1, round(fraction * len(members)))
        chosen.append(rng.permutation(members)[:keep])
    return np.sort(np.concatenate(chosen))


def validation_split(
    labels: np.ndarray, fraction: float, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(train_indices, val_indices)``: a class-balanced ``fraction`` of ``labels`` held out.

    Every class keeps at least one training image; a class with a single image gives none to
    validation.
    """
    fraction = _check_fraction(fraction, "validation fraction")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        take = min(round(fraction * len(members)), len(members) - 1)
        val.append(members[:take])
    val = np.sort(np.concatenate(val)) if val else np.zeros((0,), np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


class SubsetSource:
    """The images of ``source`` at ``indices``, in that order (a :class:`Source`)."""

    def __init__(self, source: Source, indices: np.ndarray, *, name: str | None = None):
        indices = np.asarray(indices, np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(source)):
            raise ValueError(
                f"Subset indices must lie in [0, {len(source)}); got {indices.min()}.."
                f"{indices.max()}."
            )
        self.source = source
        self.indices = indices
        self.num_classes = source.num_classes
        self.image_shape = source.image_shape
        self.in_memory = bool(getattr(source, "in_memory", False))  # as its source, for workers
        self.name = name or f"{source.name} (subset of {len(indices)})"
        labels = getattr(source, "labels", None)
        self.labels = None if labels is None else np.asarray(labels)[indices]

    def __len__(self) -> int:
        return len(self.indices)

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.source.get(self.indices[np.asarray(indices)])


def save_indices(workdir: epath.PathLike, name: str, indices: np.ndarray, **info) -> str:
    """Write ``{**info, "indices": [...]}`` to ``WORKDIR/<name>.json`` (a local path or a URI;
    written to ``.tmp`` and renamed); returns the path."""
    path = epath.Path(workdir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps({**info, "count": len(indices), "indices": [int(i) for i in indices]})
    )
    tmp.replace(path)
    return str(path)


def check_saved_indices(workdir: epath.PathLike, name: str, indices: np.ndarray) -> None:
    """Raises :class:`DataError` when ``WORKDIR/<name>.json`` exists and holds other indices
    than ``indices`` (a resumed run whose data, fractions or seed changed)."""
    path = epath.Path(workdir) / f"{name}.json"
    if not path.exists():
        return
    saved = np.asarray(json.loads(path.read_text())["indices"], np.int64)
    if not np.array_equal(saved, indices):
        raise DataError(
            f"{path} holds another subset than this config draws ({len(saved)} vs "
            f"{len(indices)} images): the data, data.label_fraction, data.val_fraction or the "
            "seed changed. Use the original settings to resume, or a new workdir."
        )


def labelled_subset(
    source: Source, fraction: float, *, seed: int, workdir: epath.PathLike
) -> tuple[Source, dict]:
    """``(source, info)``: a class-balanced ``fraction`` of ``source``
    (:func:`class_balanced_subset` with ``seed``), its indices saved as
    ``WORKDIR/label_subset.json`` by process 0; all of ``source`` at ``fraction=1``. ``info``
    holds ``label_fraction``, ``seed`` and the file's path (``label_subset``)."""
    fraction = float(fraction)
    if fraction == 1.0:
        return source, {"label_fraction": 1.0}
    indices = class_balanced_subset(source_labels(source), fraction, seed=seed)
    info = {"label_fraction": fraction, "seed": seed}
    if jax.process_index() == 0:
        info[LABEL_SUBSET] = save_indices(workdir, LABEL_SUBSET, indices, split="train", **info)
    return SubsetSource(source, indices), info


def save_val_split(
    workdir: epath.PathLike, positions: np.ndarray, source: Source, **info
) -> str | None:
    """Write the validation split as ``WORKDIR/val_split.json`` (process 0; others write
    nothing and get ``None``): ``positions`` index ``source``, saved as indices into the
    training split it is drawn from (through ``source.indices`` when ``source`` is a
    :class:`SubsetSource`)."""
    if jax.process_index() != 0:
        return None
    indices = source.indices[positions] if isinstance(source, SubsetSource) else positions
    return save_indices(workdir, VAL_SPLIT, indices, **info)


def label_splits(
    source: Source,
    *,
    label_fraction: float,
    val_fraction: float,
    seed: int,
    workdir: epath.PathLike,
    data_name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``(train_indices, val_indices)`` into ``source``: the class-balanced labelled subset
    (``label_fraction``, :func:`class_balanced_subset`) minus its class-balanced validation
    part (``val_fraction``, :func:`validation_split`; none at 0), both drawn with ``seed``.

    The subset is saved as ``WORKDIR/label_subset.json`` and the validation part as
    ``WORKDIR/val_split.json`` (with ``data_name``); when the files exist (a resumed run)
    they must hold the same indices (:func:`check_saved_indices`). Raises :class:`DataError`
    when ``val_fraction`` holds out no image, or the training part holds fewer than 2 classes.
    """
    labels = source_labels(source)
    labelled = class_balanced_subset(labels, label_fraction, seed=seed)
    if val_fraction > 0:
        train_pos, val_pos = validation_split(labels[labelled], val_fraction, seed=seed)
        train_idx, val_idx = labelled[train_pos], labelled[val_pos]
        if not len(val_idx):
            raise DataError(
                f"data.val_fraction={val_fraction} of the {len(labelled)} labelled images "
                f"(data.label_fraction={label_fraction}) holds out none: each class keeps "
                "one training image. Use data.val_fraction=0 (report the last step) or a larger "
                "fraction."
            )
    else:
        train_idx, val_idx = labelled, np.zeros((0,), np.int64)
    if len(np.unique(labels[train_idx])) < 2:
        raise DataError(
            f"The {len(train_idx)} training images of {source.name} hold "
            f"{len(np.unique(labels[train_idx]))} class; fine-tuning a classifier needs 2."
        )
    info = dict(seed=seed, data=data_name, num_source=len(labels))
    subsets = [(LABEL_SUBSET, labelled, dict(label_fraction=label_fraction, **info))]
    if len(val_idx):
        subsets.append((VAL_SPLIT, val_idx, dict(val_fraction=val_fraction, **info)))
    for name, indices, extra in subsets:
        check_saved_indices(workdir, name, indices)
        if jax.process_index() == 0:
            save_indices(workdir, name, indices, **extra)
    return train_idx, val_idx
