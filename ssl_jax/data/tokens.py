"""Tokens for text runs: a WordPiece tokenizer trained locally, packing, the token source.

**Tokenizer.** :func:`train_tokenizer` learns a BERT-style WordPiece vocabulary from the
training documents and wraps it in a Hugging Face ``tokenizers.Tokenizer`` (BERT normaliser,
lower-cased; BERT pre-tokeniser; nothing is downloaded). The special tokens take the first ids:
``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4. Training is deterministic:
the same documents and vocabulary size give the same file, byte for byte. A pretraining run
keeps its tokenizer as ``WORKDIR/tokenizer.json`` (trained on first use, read back on resume)
unless ``data.tokenizer`` names a file; its :func:`fingerprint` (the SHA-256 of the file's
bytes) goes into the export's spec, and :func:`load_tokenizer` refuses a file whose
fingerprint differs (another run's tokenizer).

**Records.** :func:`tokenize_source` turns a document source into a :class:`TokenSource`
of int32 ``tokens`` ``(N, seq_len)`` and ``segments`` ``(N, seq_len)`` held in memory:

- ``data.pack=True`` (pretraining): :func:`pack_documents`, documents concatenated into
  full sequences ``[CLS] d1 [SEP] d2 [SEP] ...``, segment ids 1, 2, ... per document
  (``[CLS]`` in the first one's), 0 on padding; labels are dropped (one class).
- ``data.pack=False`` (classification): one document per sequence, ``[CLS] d [SEP]``
  truncated to ``seq_len``, segment 1 on real tokens, 0 on padding, the document's label.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath

from ssl_jax.data.errors import DataError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
SPECIAL_IDS = tuple(range(len(SPECIAL_TOKENS)))
TOKENIZER_FILE = "tokenizer.json"


def word_counts(texts: Sequence[str], *, lowercase: bool = True) -> collections.Counter:
    """How often each word occurs in ``texts`` after BERT's normaliser and pre-tokeniser."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts = collections.Counter()
    for text in texts:
        words = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
        counts.update(word for word, _ in words)
    return counts


def learn_wordpiece_vocab(
    counts: Mapping[str, int], vocab_size: int, *, min_frequency: int = 2
) -> list[str]:
    """The WordPiece vocabulary of ``counts``: the special tokens, every character (as a word
    start and as a ``##`` continuation), then merged pieces, most frequent adjacent pair first,
    until ``vocab_size`` tokens or no pair occurs ``min_frequency`` times.

    This is the procedure of Hugging Face's ``WordPieceTrainer`` (BPE merges with the ``##``
    continuation prefix), but with ties between equally frequent pairs broken by the pairs'
    strings: the library's trainer breaks them in hash-map order, so two trainings on the
    same corpus give different vocabularies (checked with tokenizers 0.23.3).
    """
    items = sorted(counts.items())
    words = [[w[0], *("##" + c for c in w[1:])] for w, _ in items]
    freqs = [f for _, f in items]
    vocab = [*SPECIAL_TOKENS, *sorted({s for w in words for s in w} - set(SPECIAL_TOKENS))]
    known = set(vocab)
    pairs: dict[tuple[str, str], int] = collections.defaultdict(int)
    where: dict[tuple[str, str], set[int]] = collections.defaultdict(set)
    for i, w in enumerate(words):
        for pair in zip(w, w[1:], strict=False):
            pairs[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-count, pair) for pair, count in pairs.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        count, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -count:
            continue  # a stale entry: the pair's count changed since it was pushed
        if -count < min_frequency:
            break
        a, b = pair
        merged = a + b.removeprefix("##")
        if merged not in known:
            vocab.append(merged)
            known.add(merged)
        changed = set()
        for i in where.pop(pair):
            w, f = words[i], freqs[i]
            for q in zip(w, w[1:], strict=False):
                pairs[q] -= f
                changed.add(q)
            out, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and w[k] == a and w[k + 1] == b:
                    out.append(merged)
                    k += 2
                else:
                    out.append(w[k])
                    k += 1
            words[i] = out
            for q in zip(out, out[1:], strict=False):
                pairs[q] += f
                where[q].add(i)
                changed.add(q)
        pairs.pop(pair, None)
        for q in changed:
            if pairs.get(q, 0) > 0:
                heapq.heappush(heap, (-pairs[q], q))
            else:
                pairs.pop(q, None)
    return vocab


def train_tokenizer(texts: Sequence[str], *, vocab_size: int, lowercase: bool = True):
    """A WordPiece ``tokenizers.Tokenizer`` of at most ``vocab_size`` tokens learned from
    ``texts`` (:func:`learn_wordpiece_vocab`, min frequency 2: a small corpus may give fewer
    tokens), with BERT's normaliser, pre-tokeniser and greedy longest-match encoding;
    deterministic (same texts, same file bytes)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    if vocab_size <= len(SPECIAL_TOKENS):
        raise DataError(
            f"vocab_size={vocab_size}: expected more than the {len(SPECIAL_TOKENS)} special "
            "tokens; BERT uses 30522, a small run 2000-8000."
        )
    vocab = learn_wordpiece_vocab(word_counts(texts, lowercase=lowercase), vocab_size)
    model = models.WordPiece({token: i for i, token in enumerate(vocab)}, unk_token="[UNK]")
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def tokenizer_bytes(tokenizer) -> bytes:
    """The tokenizer's JSON file as written by :func:`save_tokenizer`."""
    return tokenizer.to_str(pretty=True).encode()


def fingerprint(data: bytes) -> str:
    """The SHA-256 (hex) of a tokenizer file's bytes."""
    return hashlib.sha256(data).hexdigest()


def save_tokenizer(tokenizer, path: epath.PathLike) -> str:
    """Writes ``tokenizer`` to ``path`` (atomically); returns its :func:`fingerprint`."""
    path = epath.Path(path)
    data = tokenizer_bytes(tokenizer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return fingerprint(data)


def load_tokenizer(path: epath.PathLike, expected_fingerprint: str | None = None):
    """``(tokenizer, fingerprint)`` of the file ``path``; :class:`DataError` when it is
    missing, not a tokenizer with this module's special tokens, or (with
    ``expected_fingerprint``, an export spec's) not the expected one."""
    from tokenizers import Tokenizer

    path = epath.Path(path)
    if not path.exists():
        raise DataError(
            f"no tokenizer at {path}: a text run trains one into its workdir "
            f"({TOKENIZER_FILE}); run pretraining first or set --config.data.tokenizer to "
            "the file it wrote."
        )
    data = path.read_bytes()
    found = fingerprint(data)
    if expected_fingerprint is not None and found != expected_fingerprint:
        raise DataError(
            f"tokenizer {path} has fingerprint {found[:12]}... but the export expects "
            f"{expected_fingerprint[:12]}...: it is another run's (or a retrained) tokenizer. "
            "Use the tokenizer.json of the run that wrote the export."
        )
    try:
        tokenizer = Tokenizer.from_str(data.decode())
    except Exception as e:  # tokenizers raises its own Exception subclass
        raise DataError(f"{path}: not a tokenizers JSON file ({e}).") from e
    ids = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
    if ids != list(SPECIAL_IDS):
        raise DataError(
            f"{path}: special tokens {list(SPECIAL_TOKENS)} have ids {ids}, expected "
            f"{list(SPECIAL_IDS)}; train it with ssl_jax.data.tokens.train_tokenizer."
        )
    return tokenizer, found


def encode(tokenizer, texts: Sequence[str]) -> list[np.ndarray]:
    """The token ids (int32) of each text, without special tokens."""
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [np.asarray(e.ids, np.int32) for e in encodings]


def pack_documents(
    documents: Sequence[np.ndarray],
    seq_len: int,
    *,
    cls_id: int = CLS_ID,
    sep_id: int = SEP_ID,
    pad_id: int = PAD_ID,
) -> tuple[np.ndarray, np.ndarray]:
    """Packs token-id documents into ``(tokens, segments)``, int32 ``(S, seq_len)`` each.

    Each sequence is ``[CLS] d_a [SEP] d_b [SEP] ... [PAD] ...``: documents are taken in
    order and appended while they fit whole (a document longer than ``seq_len - 2`` is first
    cut into pieces of ``seq_len - 2``, each a document of its own); the next one starts a
    new sequence. ``segments`` numbers the documents of a sequence 1, 2, ... (``[CLS]`` in
    the first one's, each ``[SEP]`` in its document's), 0 on padding. Empty documents are
    skipped. Host-side NumPy.
    """
    if seq_len < 3:
        raise DataError(f"data.seq_len={seq_len}: expected at least 3 ([CLS] token [SEP]).")
    room = seq_len - 2
    pieces = [d[i : i + room] for d in documents for i in range(0, len(d), room)]
    rows, row = [], []
    used = 1
    for piece in pieces:
        if row and used + len(piece) + 1 > seq_len:
            rows.append(row)
            row, used = [], 1
        row.append(piece)
        used += len(piece) + 1
    if row:
        rows.append(row)
    tokens = np.full((len(rows), seq_len), pad_id, np.int32)
    segments = np.zeros((len(rows), seq_len), np.int32)
    for r, row in enumerate(rows):
        tokens[r, 0], segments[r, 0], at = cls_id, 1, 1
        for s, piece in enumerate(row, 1):
            tokens[r, at : at + len(piece)] = piece
            tokens[r, at + len(piece)] = sep_id
            segments[r, at : at + len(piece) + 1] = s
            at += len(piece) + 1
    return tokens, segments


def truncate_documents(
    documents: Sequence[np.ndarray], seq_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """One document per sequence: ``[CLS] d[:seq_len - 2] [SEP]`` then ``[PAD]``; segment 1
    on real tokens, 0 on padding. int32 ``(len(documents), seq_len)`` each."""
    if seq_len < 3:
        raise DataError(f"data.seq_len={seq_len}: expected at least 3 ([CLS] token [SEP]).")
    tokens = np.full((len(documents), seq_len), PAD_ID, np.int32)
    segments = np.zeros((len(documents), seq_len), np.int32)
    for r, d in enumerate(documents):
        d = d[: seq_len - 2]
        tokens[r, 0], tokens[r, 1 : 1 + len(d)], tokens[r, 1 + len(d)] = CLS_ID, d, SEP_ID
        segments[r, : len(d) + 2] = 1
    return tokens, segments


def make_text_input_spec(
    *, tokenizer: str, fingerprint: str, vocab_size: int, seq_len: int, lowercase: bool = True
) -> dict:
    """The ``input`` section of a text export's spec: the tokenizer file (as the run wrote
    it), its fingerprint (:func:`fingerprint`, which :func:`load_tokenizer` checks), its
    vocabulary size, the sequence length, the special tokens (ids 0, 1, ...). Raises
    ``ValueError`` naming a bad field."""
    for name, value in (("vocab_size", vocab_size), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"text input {name} must be a positive int, got {value!r}.")
    if not isinstance(tokenizer, str) or not tokenizer:
        raise ValueError(f"text input tokenizer must be a file path, got {tokenizer!r}.")
    if not isinstance(fingerprint, str) or len(fingerprint) != 64:
        raise ValueError(f"text input fingerprint must be a SHA-256 hex, got {fingerprint!r}.")
    return {
        "kind": "tokens",
        "tokenizer": str(tokenizer),
        "fingerprint": str(fingerprint),
        "vocab_size": int(vocab_size),
        "seq_len": int(seq_len),
        "lowercase": bool(lowercase),
        "special_tokens": list(SPECIAL_TOKENS),
    }


class TokenSource:
    """Token records in memory: ``get(indices)`` returns ``({"tokens", "segments"}, labels)``
    (int32 ``(k, seq_len)`` each, int32 ``(k,)``). ``input_spec`` is the export's ``input``
    section (:func:`make_text_input_spec`); ``record_spec`` the records' shapes and dtypes."""

    in_memory = True

    def __init__(
        self,
        tokens: np.ndarray,
        segments: np.ndarray,
        labels: np.ndarray,
        *,
        num_classes: int,
        name: str,
        input_spec: dict,
    ):
        if len(tokens) == 0:
            raise DataError(f"{name}: no token sequences; the documents are all empty.")
        self.tokens, self.segments = tokens, segments
        self.labels = np.asarray(labels, np.int32)
        self.num_classes = int(num_classes)
        self.name = name
        self.input_spec = input_spec
        self.seq_len = int(tokens.shape[1])
        self.record_spec = {k: ((self.seq_len,), np.int32) for k in ("tokens", "segments")}

    def __len__(self) -> int:
        return len(self.tokens)

    def get(self, indices: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        indices = np.asarray(indices, np.int64)
        records = {"tokens": self.tokens[indices], "segments": self.segments[indices]}
        return records, self.labels[indices]


def run_tokenizer(data: Any, train_documents, workdir: epath.PathLike | None):
    """``(tokenizer, path, fingerprint)`` of a text run: ``data.tokenizer`` if set (it must
    exist), else ``workdir/tokenizer.json``, trained on ``train_documents`` with
    ``data.vocab_size`` tokens when absent."""
    named = getattr(data, "tokenizer", "") or ""
    if named:
        path = epath.Path(named).expanduser()
    elif workdir is not None:
        path = epath.Path(workdir) / TOKENIZER_FILE
        if not path.exists():
            vocab_size = int(getattr(data, "vocab_size", 0) or 0)
            tokenizer = train_tokenizer(
                train_documents().texts,
                vocab_size=vocab_size,
                lowercase=bool(getattr(data, "lowercase", True)),
            )
            save_tokenizer(tokenizer, path)
    else:
        raise DataError(
            "a text source with data.seq_len needs a tokenizer: set --config.data.tokenizer="
            f"/path/to/{TOKENIZER_FILE} (a pretraining run writes one into its workdir)."
        )
    tokenizer, found = load_tokenizer(path, getattr(data, "tokenizer_fingerprint", None))
    return tokenizer, path, found


def tokenize_source(data: Any, documents, train_documents, workdir=None) -> TokenSource:
    """The :class:`TokenSource` of document source ``documents`` (see the module docstring):
    ``data.seq_len`` tokens per sequence, packed when ``data.pack``; ``train_documents()``
    gives the training split, to train the tokenizer on when it has none yet."""
    seq_len = int(data.seq_len)
    tokenizer, path, found = run_tokenizer(data, train_documents, workdir)
    ids = encode(tokenizer, documents.texts)
    pack = bool(getattr(data, "pack", True))
    if pack:
        tokens, segments = pack_documents(ids, seq_len)
        labels, num_classes = np.zeros(len(tokens), np.int32), 1
    else:
        tokens, segments = truncate_documents(ids, seq_len)
        labels, num_classes = documents.labels, documents.num_classes
    spec = make_text_input_spec(
        tokenizer=str(path),
        fingerprint=found,
        vocab_size=tokenizer.get_vocab_size(),
        seq_len=seq_len,
        lowercase=bool(getattr(data, "lowercase", True)),
    )
    kind = "packed" if pack else "truncated"
    return TokenSource(
        tokens,
        segments,
        labels,
        num_classes=num_classes,
        name=f"{documents.name} ({kind}, {seq_len} tokens)",
        input_spec=spec,
    )
