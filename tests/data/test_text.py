"""Text sources (jsonl and plain text folders), their errors, and the loader on token records."""

import json

import numpy as np
import pytest

from ssl_jax.data import DataError, get_source
from ssl_jax.data.loader import BatchIterator, iterate_eval
from ssl_jax.data.text import make_jsonl_source, make_text_source
from tests.data.test_tokens import CORPUS, data_config


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_jsonl_reads_texts_and_labels_in_file_order(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a b", "label": 2}, {"text": "c", "label": 0}])
    write_jsonl(tmp_path / "test.jsonl", [{"text": "d", "label": 1}])
    train = make_jsonl_source(tmp_path, "train")
    texts, labels = train.get(np.array([1, 0]))
    assert list(texts) == ["c", "a b"] and labels.tolist() == [0, 2]
    assert labels.dtype == np.int32 and train.num_classes == 3
    assert make_jsonl_source(tmp_path, "test").num_classes == 3  # from the training labels
    (tmp_path / "classes.txt").write_text("x\ny\nz\nw\n")
    assert make_jsonl_source(tmp_path, "test").num_classes == 4


def test_jsonl_without_labels_is_one_class(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a"}, {"text": "b", "doc": "x"}])
    source = make_jsonl_source(tmp_path, "train")
    assert source.num_classes == 1 and source.labels.tolist() == [0, 0]


@pytest.mark.parametrize(
    "lines, message",
    [
        ([], "empty, no documents"),
        ([{"txt": "a"}], "no string field 'text'"),
        ([{"text": 3}], "no string field 'text'"),
        ([{"text": "a", "label": 1.5}], "is not an int"),
        ([{"text": "a", "label": True}], "is not an int"),
        ([{"text": "a", "label": 0}, {"text": "b"}], "some lines have a 'label'"),
        ([{"text": "a", "label": -1}], r"outside \[0, 1\)"),
    ],
)
def test_jsonl_errors_name_the_problem(tmp_path, lines, message):
    write_jsonl(tmp_path / "train.jsonl", lines)
    with pytest.raises(DataError, match=message):
        make_jsonl_source(tmp_path, "train")


def test_jsonl_label_outside_classes_txt(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": 2}])
    (tmp_path / "classes.txt").write_text("x\ny\n")
    with pytest.raises(DataError, match=r"train.jsonl: document 0 has label 2, outside \[0, 2\)"):
        make_jsonl_source(tmp_path, "train")


def test_jsonl_bad_json_names_the_line(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "a"}\n{text: b}\n')
    with pytest.raises(DataError, match=r"train.jsonl:2: not a JSON object"):
        make_jsonl_source(tmp_path, "train")


def test_text_folder_by_line_and_by_file(tmp_path):
    (tmp_path / "train.txt").write_text("one  doc\n\nsecond\n")
    assert make_text_source(tmp_path, "train").texts == ["one doc", "second"]
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "b.txt").write_text("second\nfile")
    (tmp_path / "test" / "a.txt").write_text("first file\n")
    assert make_text_source(tmp_path, "test").texts == ["first file", "second file"]
    assert make_text_source(tmp_path, "test", unit="line").texts == ["first file", "second", "file"]
    (tmp_path / "test" / "c.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="c.txt: empty"):
        make_text_source(tmp_path, "test")
    with pytest.raises(DataError, match="no test.txt and no test/"):
        make_text_source(tmp_path / "test", "test")


def test_registry_builds_text_sources_and_slices_them(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in "abc"])
    data = data_config(tmp_path, seq_len=None, max_documents=2)
    source = get_source(data, "train")
    assert source.texts == ["a", "b"] and source.name.endswith("[:2]")
    with pytest.raises(DataError, match="needs a tokenizer"):
        get_source(data_config(tmp_path, seq_len=8), "train")


def test_loader_serves_token_records(tmp_path):
    write_jsonl(
        tmp_path / "train.jsonl", [{"text": t, "label": i % 3} for i, t in enumerate(CORPUS)]
    )
    write_jsonl(tmp_path / "test.jsonl", [{"text": t, "label": 1} for t in CORPUS[:5]])
    data = data_config(tmp_path, seq_len=16, pack=False)
    train = get_source(data, "train", workdir=tmp_path / "run")
    assert (tmp_path / "run" / "tokenizer.json").exists()
    batch = BatchIterator(train, global_batch_size=4, seed=0).batch_at(1)
    assert sorted(batch) == ["labels", "segments", "tokens"]
    assert batch["tokens"].shape == (4, 16) and batch["tokens"].dtype == np.int32
    test = get_source(data, "test", workdir=tmp_path / "run")  # the run's tokenizer
    assert test.input_spec == train.input_spec
    batches = list(iterate_eval(test, batch_size=4, workers=0))
    assert [b["mask"].sum() for b in batches] == [4, 1]
    np.testing.assert_array_equal(batches[1]["tokens"][0], test.tokens[4])
    assert not batches[1]["tokens"][1:].any() and batches[1]["labels"].tolist() == [1, 0, 0, 0]
