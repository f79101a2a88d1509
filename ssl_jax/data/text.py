"""Text sources: documents from JSON-lines files or plain ``.txt`` files.

A document source gives random access to the documents of one split: ``get(indices)`` returns
the texts (a NumPy object array of ``str``) and int32 labels. It is what a tokenizer is
trained on; :func:`ssl_jax.data.tokens.tokenize_source` turns it into the int32 token
records the loader serves (``data.seq_len`` set).

- ``data.name="jsonl"``: a folder with ``train.jsonl`` and ``test.jsonl``, one JSON object
  per line with a string field ``text`` and, optionally on every line, an integer ``label``
  in ``[0, num_classes)``. ``num_classes`` is ``data.num_classes``, else the number of lines
  of the folder's ``classes.txt``, else the training split's largest label plus one.
- ``data.name="text"``: a folder with ``train.txt`` / ``test.txt`` (one document per
  non-empty line) or ``train/`` / ``test/`` folders of ``.txt`` files (sorted by name; one
  document per file with ``data.text_unit="file"``, the default, or per non-empty line with
  ``"line"``). Plain text has no labels (all 0, one class).
"""

from __future__ import annotations

import json

import numpy as np
from etils import epath

from ssl_jax.data.base import check_split
from ssl_jax.data.errors import DataError

TEXT_UNITS = ("file", "line")


class TextSource:
    """The documents of one split, in memory: ``texts`` (a list of ``str``), int32 ``labels``
    in ``[0, num_classes)``. ``documents`` marks it as a source of raw text."""

    documents = True
    in_memory = True

    def __init__(self, texts: list[str], labels: np.ndarray, *, num_classes: int, name: str):
        if not texts:
            raise DataError(f"{name}: no documents; expected at least one non-empty text.")
        self.texts = list(texts)
        self.labels = np.asarray(labels, np.int32)
        self.num_classes = int(num_classes)
        self.name = name

    def __len__(self) -> int:
        return len(self.texts)

    def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        texts = np.empty(len(indices), object)
        texts[:] = [self.texts[i] for i in indices]
        return texts, self.labels[indices]

    def head(self, count: int | None) -> TextSource:
        """The first ``count`` documents (all with None): a slice for a quick run."""
        if count is None or count >= len(self):
            return self
        if count < 1:
            raise DataError(f"data.max_documents={count}: expected a positive count or None.")
        return TextSource(
            self.texts[:count],
            self.labels[:count],
            num_classes=self.num_classes,
            name=f"{self.name}[:{count}]",
        )


def _folder(path: epath.PathLike, kind: str) -> epath.Path:
    folder = epath.Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"{kind} data folder {folder} does not exist or is not a folder; set "
            "--config.data.path=/path/to/folder."
        )
    return folder


def _class_count(folder: epath.Path) -> int | None:
    classes = folder / "classes.txt"
    if not classes.exists():
        return None
    return sum(1 for line in classes.read_text().splitlines() if line.strip())


def read_jsonl(file: epath.PathLike) -> tuple[list[str], list[int] | None]:
    """The ``text`` of every line of ``file`` and its ``label`` (None when no line has one);
    :class:`DataError` naming the file and line for an empty file, invalid JSON, a missing or
    non-string ``text``, a label that is not an int, or labels on only some lines."""
    file = epath.Path(file)
    texts, labels = [], []
    with file.open("r") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{file}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{where}: not a JSON object ({e}); write one object per line."
                ) from e
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise DataError(
                    f"{where}: no string field 'text' (found keys "
                    f"{sorted(record) if isinstance(record, dict) else type(record).__name__}); "
                    'each line needs {"text": "...", "label": <int, optional>}.'
                )
            texts.append(record["text"])
            label = record.get("label")
            if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
                raise DataError(
                    f"{where}: label {label!r} is not an int; labels are class ids 0..K-1."
                )
            if labels and (label is None) != (labels[0] is None):
                raise DataError(
                    f"{where}: some lines have a 'label' and others not; label every line or none."
                )
            labels.append(label)
    if not texts:
        raise DataError(f"{file}: empty, no documents; expected one JSON object per line.")
    return texts, (None if labels[0] is None else labels)


def check_text_labels(labels: list[int], num_classes: int, where: str) -> np.ndarray:
    """``labels`` as int32, or :class:`DataError` for one outside ``[0, num_classes)``."""
    array = np.asarray(labels, np.int64)
    bad = np.flatnonzero((array < 0) | (array >= num_classes))
    if len(bad):
        raise DataError(
            f"{where}: document {int(bad[0])} has label {int(array[bad[0]])}, outside "
            f"[0, {num_classes}); fix it, or set --config.data.num_classes (classes.txt has "
            "one class per line)."
        )
    return array.astype(np.int32)


def make_jsonl_source(
    path: epath.PathLike, split: str, *, num_classes: int | None = None
) -> TextSource:
    """Split ``"train"`` or ``"test"`` of a JSON-lines folder (see the module docstring)."""
    check_split(split)
    folder = _folder(path, "jsonl")
    file = folder / f"{split}.jsonl"
    if not file.exists():
        raise DataError(
            f"{folder}: no {split}.jsonl for split {split!r}; found "
            f"{sorted(p.name for p in folder.iterdir())[:20] or 'nothing'}."
        )
    texts, labels = read_jsonl(file)
    if num_classes is None:
        num_classes = _class_count(folder)
    if num_classes is None and labels is not None:
        train_labels = labels if split == "train" else read_jsonl(folder / "train.jsonl")[1]
        num_classes = max(train_labels or [0]) + 1
    num_classes = num_classes or 1
    labels = check_text_labels(labels or [0] * len(texts), num_classes, str(file))
    return TextSource(texts, labels, num_classes=num_classes, name=f"jsonl:{folder}/{split}")


def make_text_source(path: epath.PathLike, split: str, *, unit: str = "file") -> TextSource:
    """Split ``"train"`` or ``"test"`` of a plain-text folder (see the module docstring)."""
    check_split(split)
    if unit not in TEXT_UNITS:
        raise DataError(f"data.text_unit={unit!r} is unknown; valid: {list(TEXT_UNITS)}.")
    folder = _folder(path, "text")
    single, many = folder / f"{split}.txt", folder / split
    if single.exists():
        files, unit = [single], "line"
    elif many.is_dir():
        files = sorted(many.glob("*.txt"))
    else:
        files = []
    if not files:
        raise DataError(
            f"{folder}: no {split}.txt and no {split}/*.txt for split {split!r}; put one "
            "document per line in the first, or one per file in the second."
        )
    texts = []
    for file in files:
        content = file.read_text()
        parts = content.splitlines() if unit == "line" else [content]
        found = [" ".join(part.split()) for part in parts if part.strip()]
        if not found:
            raise DataError(f"{file}: empty, no text; remove it or write a document in it.")
        texts.extend(found)
    return TextSource(
        texts, np.zeros(len(texts), np.int32), num_classes=1, name=f"text:{folder}/{split}"
    )
