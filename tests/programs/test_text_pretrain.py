"""Pretraining MLM on a jsonl folder end to end: the tokenizer in the workdir, named by the
export's spec, an exact resume, and the mismatch errors."""

import json

import numpy as np
import pytest

from ssl_jax.checkpoint import read_encoder_spec
from ssl_jax.data import DataError
from ssl_jax.data.tokens import load_tokenizer, save_tokenizer, train_tokenizer
from ssl_jax.programs import pretrain
from tests.data.test_tokens import CORPUS
from tests.methods.test_mlm import MLM
from tests.programs.tiny import tiny_pretrain_config


def losses(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def text_config(path, **fields):
    overrides = {**MLM, "data.name": "jsonl", "data.path": str(path), "data.pack": True}
    overrides["data.seq_len"] = 12
    overrides["model.max_len"] = 12
    overrides.update({"total_steps": 6, "data.batch_size": 8, **fields})
    config = tiny_pretrain_config(**overrides)
    return config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jsonl")
    for split, texts in (("train", CORPUS), ("test", CORPUS[:8])):
        lines = [json.dumps({"text": t, "label": i % 2}) for i, t in enumerate(texts)]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.slow  # two runs of a compiled MLM step (about 15 s)
def test_mlm_pretrains_resumes_exactly_and_names_its_tokenizer(corpus, tmp_path):
    config = text_config(corpus)
    pretrain.run(config, tmp_path / "whole")
    workdir = tmp_path / "cut"
    first = pretrain.run(config, workdir, should_stop=lambda step: step == 3)
    assert first["interrupted_at"] == 3
    second = pretrain.run(config, workdir)
    assert second["start_step"] == 3 and second["final_step"] == 6
    got, want = losses(workdir), losses(tmp_path / "whole")
    assert sorted(got) == [1, 2, 3, 4, 5, 6] and len(set(want.values())) == 6
    np.testing.assert_allclose([got[s] for s in got], [want[s] for s in got], rtol=1e-6)
    spec = read_encoder_spec(str(workdir), 6)
    assert spec["method"] == "mlm" and spec["input"]["kind"] == "tokens"
    assert spec["input"]["tokenizer"] == str(workdir / "tokenizer.json")
    both = [(tmp_path / d / "tokenizer.json").read_bytes() for d in ("whole", "cut")]
    assert both[0] == both[1]  # learned twice, byte for byte the same
    load_tokenizer(spec["input"]["tokenizer"], spec["input"]["fingerprint"])
    # Another tokenizer in its place: the export refuses it, and so does a resume.
    save_tokenizer(train_tokenizer(CORPUS[:20], vocab_size=128), workdir / "tokenizer.json")
    with pytest.raises(DataError, match="another run's"):
        load_tokenizer(spec["input"]["tokenizer"], spec["input"]["fingerprint"])
    with pytest.raises(DataError, match="another run's"):
        pretrain.run(text_config(corpus, total_steps=8), workdir)


def test_a_tokenizer_larger_than_the_model_is_an_error(corpus, tmp_path):
    with pytest.raises(ValueError, match="but model.vocab_size=40; set --config.model.vocab"):
        pretrain.run(text_config(corpus, **{"model.vocab_size": 40}), tmp_path / "a")
