"""The compare program on hand-written results files (the launch test runs it on real ones)."""

import json
import os

import ml_collections
import pytest

from ssl_jax.programs import compare


def write(path, **results):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump(results, f)
    return str(path)


@pytest.fixture
def runs(tmp_path):
    """Two encoders of one pretraining run (step 6 and its random init), a raw-pixel row,
    each probed by one or two programs; the pretraining workdir's own results too."""
    run = str(tmp_path / "simclr")
    write(run, total_steps=6, final_step=6, loss=5.0, knn_top1_k20=41.0)
    common = dict(split="test", pretrained=run, num_train=1437)
    probe = dict(program="linear_probe", protocol="offline", train_top1=99.0, val_top1=90.0)
    return {
        "run": run,
        "probe": write(
            tmp_path / "simclr" / "probe", top1=80.0, top5=97.0, l2=0.01, **probe,
            encoder="pretrained", step=6, **common,
        ),
        "knn": write(
            tmp_path / "simclr" / "knn", program="knn", top1_k20=70.0, top5_k20=95.0,
            encoder="pretrained", step=6, **common,
        ),
        "random": write(
            tmp_path / "random" / "probe", top1=50.0, top5=80.0, **probe,
            encoder="random_init", seed=0, **common,
        ),
        "pixels": write(
            tmp_path / "pixels", top1=60.0, top5=85.0, **probe, encoder="raw_pixels",
            input_size=8, label_fraction=0.1, **common,
        ),
    }  # fmt: skip


def config(*workdirs, **fields):
    c = ml_collections.ConfigDict(
        dict(
            workdirs=tuple(workdirs),
            glob="",
            metrics=compare.DEFAULT_METRICS,
            exclude=compare.DEFAULT_EXCLUDE,
            group_by="encoder",
            title="",
        )
    )
    c.update(fields)
    return c


def test_a_row_per_encoder_a_column_per_program_metric(runs, tmp_path):
    out = compare.run(
        config(runs["probe"], runs["knn"], runs["random"], runs["pixels"], runs["run"]),
        str(tmp_path / "cmp"),
    )
    assert out["columns"] == [
        "linear_probe/offline top1",
        "knn top1_k20",
        "linear_probe/offline @10% labels top1",
        "pretrain knn_top1_k20",
    ]
    table = {row["label"]: row["values"] for row in out["rows"]}
    # The pretraining run's own results land in the row of the encoder it exported.
    assert table == {
        "simclr": {
            "linear_probe/offline top1": 80.0,
            "knn top1_k20": 70.0,
            "pretrain knn_top1_k20": 41.0,
        },
        "simclr (random init)": {"linear_probe/offline top1": 50.0},
        "simclr (raw pixels)": {"linear_probe/offline @10% labels top1": 60.0},
    }
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert text == out["table"]
    assert "| simclr (random init) | 50 | – | – | – |" in text
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert saved["columns"] == out["columns"] and len(saved["inputs"]) == 5
    assert saved["rows"][0]["sources"]["knn top1_k20"] == os.path.join(runs["knn"], "results.json")
    with open(tmp_path / "cmp" / "compare.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_glob_patterns_and_rows_per_workdir(runs, tmp_path):
    out = compare.run(
        config(glob=str(tmp_path / "*" / "probe"), group_by="workdir"), str(tmp_path / "cmp")
    )
    assert [row["label"] for row in out["rows"]] == ["random/probe", "simclr/probe"]
    assert out["columns"] == ["linear_probe/offline top1"]


def test_a_missing_results_file_is_named(runs, tmp_path):
    missing = str(tmp_path / "simclr" / "nope")
    with pytest.raises(FileNotFoundError, match=os.path.join(missing, "results.json")):
        compare.run(config(runs["probe"], missing), str(tmp_path / "cmp"))
    with pytest.raises(FileNotFoundError, match="matches no workdir"):
        compare.run(config(glob=str(tmp_path / "*" / "knnn")), str(tmp_path / "cmp"))
    with pytest.raises(ValueError, match="Nothing to compare"):
        compare.run(config(), str(tmp_path / "cmp"))


def test_two_files_for_one_cell_are_an_error_unless_rows_are_workdirs(runs, tmp_path):
    again = write(
        tmp_path / "simclr" / "probe2", **json.load(open(runs["probe"] + "/results.json"))
    )
    with pytest.raises(ValueError, match="both give 'linear_probe/offline top1'"):
        compare.run(config(runs["probe"], again), str(tmp_path / "cmp"))
    out = compare.run(config(runs["probe"], again, group_by="workdir"), str(tmp_path / "cmp"))
    assert [row["label"] for row in out["rows"]] == ["probe", "probe2"]


def test_results_without_a_program_name_are_recognised():
    assert compare.program_name({"top1_k20": 1.0}, "x/results.json") == "knn"
    assert compare.program_name({"top1": 1.0, "final_train_loss": 1.0}, "x/r.json") == (
        "linear_probe"
    )
    assert compare.program_name({"nmi": 0.5}, "runs/cluster/results.json") == "cluster"
    old_probe = {"top1": 1.0, "final_train_loss": 1.0}  # written before issue #8
    assert compare.column_prefix(old_probe, "x/results.json") == "linear_probe/sgd_features"
    assert compare.metric_keys(
        {"top1": 1.0, "train_top1": 2.0, "nmi": 0.4, "top1_k20": 3.0, "ok": True, "acc": "x"}
    ) == ["top1", "nmi", "top1_k20"]
