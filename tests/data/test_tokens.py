"""The locally trained tokenizer, packing and truncation of token documents."""

import types

import numpy as np
import pytest

from ssl_jax.data import DataError
from ssl_jax.data.tokens import (
    CLS_ID,
    PAD_ID,
    SEP_ID,
    SPECIAL_TOKENS,
    encode,
    fingerprint,
    load_tokenizer,
    pack_documents,
    save_tokenizer,
    tokenizer_bytes,
    train_tokenizer,
    truncate_documents,
)

WORDS = "the cat sat on a mat while dogs ran over green hills and birds sang songs".split()
CORPUS = [
    " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(4 + i % 9)) + "." for i in range(60)
]


def data_config(path, **fields):
    return types.SimpleNamespace(
        **{"name": "jsonl", "path": str(path), "vocab_size": 120, "pack": True, **fields}
    )


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, vocab_size=120)


def test_training_is_deterministic_to_the_byte(tokenizer, tmp_path):
    again = train_tokenizer(list(CORPUS), vocab_size=120)
    assert tokenizer_bytes(again) == tokenizer_bytes(tokenizer)
    a = save_tokenizer(tokenizer, tmp_path / "a.json")
    b = save_tokenizer(again, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes() and a == b
    other = train_tokenizer(CORPUS[:30], vocab_size=120)
    assert fingerprint(tokenizer_bytes(other)) != a


def test_special_tokens_first_and_words_round_trip(tokenizer):
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    (ids,) = encode(tokenizer, ["The cat sat."])
    assert ids.dtype == np.int32 and min(ids) >= len(SPECIAL_TOKENS)
    assert tokenizer.decode(ids.tolist()) == "the cat sat."


def test_load_refuses_missing_foreign_and_mismatched_files(tokenizer, tmp_path):
    with pytest.raises(DataError, match="no tokenizer at"):
        load_tokenizer(tmp_path / "none.json")
    found = save_tokenizer(tokenizer, tmp_path / "t.json")
    assert load_tokenizer(tmp_path / "t.json", found)[1] == found
    with pytest.raises(DataError, match="another run's"):
        load_tokenizer(tmp_path / "t.json", "0" * 64)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="not a tokenizers JSON file"):
        load_tokenizer(tmp_path / "bad.json")
    with pytest.raises(DataError, match="more than the 5 special tokens"):
        train_tokenizer(CORPUS, vocab_size=5)


def test_packing_fills_sequences_with_whole_documents():
    docs = [np.array([10, 11]), np.array([12, 13, 14]), np.array([], np.int32), np.arange(20, 27)]
    tokens, segments = pack_documents(docs, 8)
    C, S, P = CLS_ID, SEP_ID, PAD_ID
    np.testing.assert_array_equal(
        tokens,
        [
            [C, 10, 11, S, 12, 13, 14, S],
            [C, 20, 21, 22, 23, 24, 25, S],  # a document longer than 6 is cut into pieces
            [C, 26, S, P, P, P, P, P],
        ],
    )
    np.testing.assert_array_equal(
        segments, [[1, 1, 1, 1, 2, 2, 2, 2], [1] * 8, [1, 1, 1, 0, 0, 0, 0, 0]]
    )
    assert tokens.dtype == segments.dtype == np.int32
    # Every document token appears once, in order.
    real = tokens[(tokens != C) & (tokens != S) & (tokens != P)]
    np.testing.assert_array_equal(real, np.concatenate(docs))


def test_truncation_keeps_one_document_per_sequence():
    tokens, segments = truncate_documents([np.arange(10, 20), np.array([7])], 5)
    np.testing.assert_array_equal(tokens, [[CLS_ID, 10, 11, 12, SEP_ID], [CLS_ID, 7, SEP_ID, 0, 0]])
    np.testing.assert_array_equal(segments, [[1] * 5, [1, 1, 1, 0, 0]])
    with pytest.raises(DataError, match="at least 3"):
        pack_documents([], 2)


def test_vocabulary_merges_the_most_frequent_pair_first_and_breaks_ties_by_strings():
    from ssl_jax.data.tokens import learn_wordpiece_vocab

    vocab = learn_wordpiece_vocab({"ab": 5, "abc": 3, "b": 1}, 20)
    assert vocab == [*SPECIAL_TOKENS, "##b", "##c", "a", "b", "ab", "abc"]
    # (x, ##y) and (y, ##x) both occur twice: the smaller pair, by its strings, merges first.
    assert learn_wordpiece_vocab({"xy": 2, "yx": 2}, 10)[-1] == "xy"  # room for one merge
    assert learn_wordpiece_vocab({"xy": 2, "yx": 2}, 20)[-2:] == ["xy", "yx"]  # then none left
    assert learn_wordpiece_vocab({"ab": 1}, 20) == [*SPECIAL_TOKENS, "##b", "a"]  # no merge
