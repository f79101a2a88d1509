"""The compare program on hand-written results files (the launch test runs it on real ones)."""

import json
import os

import ml_collections
import pytest

from ssl_jax.programs import compare

DIGITS = {"name": "digits", "image_size": 8, "train_split": "train", "test_split": "test"}
FLOWERS = {"name": "folder", "path": "/data/flowers", "train_split": "train", "test_split": "test"}


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
    write(
        run,
        program="pretrain",
        dataset=DIGITS,
        total_steps=6,
        final_step=6,
        loss=5.0,
        knn_top1_k20=41.0,
    )
    common = dict(split="test", pretrained=run, num_train=1437, dataset=DIGITS)
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
            random_init_line=True,
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
    assert "Every result is on digits 8px." in text  # one dataset: said once, not per column
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


def test_results_without_a_program_name_are_labelled_unknown_not_guessed(runs, tmp_path):
    """Older programs did not name themselves: such a fine-tuning's top1 and final_train_loss
    once made it ``linear_probe/sgd_features``; now it is an unknown program, and said so."""
    old_finetune = write(
        tmp_path / "old" / "finetune", top1=70.0, top5=90.0, final_train_loss=0.5,
        label_fraction=0.1, encoder="pretrained", pretrained=runs["run"], step=6, data="digits",
    )  # fmt: skip
    old_knn = write(tmp_path / "old" / "knn", top1_k20=65.0, pretrained=runs["run"], step=6)
    out = compare.run(config(old_finetune, old_knn), str(tmp_path / "cmp"))
    assert out["columns"] == [
        "unknown program @10% labels top1",
        "unknown program top1_k20",
    ]
    assert out["unlabelled"] == [f"{old_finetune}/results.json", f"{old_knn}/results.json"]
    note = "Results with no program name (written by an older version): "
    assert f"{note}{old_finetune}/results.json, {old_knn}/results.json;" in out["table"]
    assert compare.program_name({"top1_k20": 1.0}) is None
    assert compare.column_prefix({"top1": 1.0, "final_train_loss": 1.0}) == "unknown program"


def test_few_shot_and_cluster_metrics_are_in_the_default_columns(runs, tmp_path):
    at = dict(encoder="pretrained", pretrained=runs["run"], step=6, dataset=DIGITS)
    few_shot = write(
        tmp_path / "simclr" / "few_shot",
        program="few_shot",
        proto_5way_1shot=40.0,
        proto_5way_1shot_ci95=2.0,
        logreg_allway_5shot=20.0,
        logreg_allway_5shot_ci95=1.0,
        episodes=20,
        all_way=10,
        **at,
    )
    cluster = write(
        tmp_path / "simclr" / "cluster",
        program="cluster",
        acc=30.0,
        nmi=20.0,
        ari=10.0,
        inertia=5.0,
        k=10,
        num_clustered=360,
        **at,
    )
    monitors = write(
        tmp_path / "other", program="pretrain", dataset=DIGITS, final_step=4,
        few_shot_proto_5way_1shot=35.0, few_shot_proto_5way_1shot_ci95=3.0, cluster_acc=25.0,
        cluster_nmi=15.0, cluster_ari=5.0, cluster_inertia=9.0,
    )  # fmt: skip
    out = compare.run(config(few_shot, cluster, monitors), str(tmp_path / "cmp"))
    assert out["columns"] == [
        "few_shot proto_5way_1shot",
        "few_shot logreg_allway_5shot",
        "cluster acc",
        "cluster nmi",
        "cluster ari",
        "pretrain few_shot_proto_5way_1shot",
        "pretrain cluster_acc",
        "pretrain cluster_nmi",
        "pretrain cluster_ari",
    ]
    assert [row["label"] for row in out["rows"]] == ["simclr", "other"]
    assert compare.metric_keys(
        {"top1": 1.0, "train_top1": 2.0, "nmi": 0.4, "top1_k20": 3.0, "ok": True, "acc": "x"}
    ) == ["top1", "nmi", "top1_k20"]


def test_results_on_another_dataset_say_which_in_their_column(tmp_path):
    """A digits fine-tuning of an encoder pretrained on an image folder lands in that
    encoder's row, in a column that names the digits; missing cells are dashes."""
    run = write(tmp_path / "flowers", program="pretrain", dataset=FLOWERS, final_step=6)
    at = dict(encoder="pretrained", pretrained=run, step=6)
    probe = write(
        tmp_path / "flowers" / "probe",
        program="linear_probe",
        protocol="offline",
        top1=55.0,
        dataset=FLOWERS,
        **at,
    )
    finetune = write(
        tmp_path / "flowers" / "finetune",
        program="finetune",
        top1=90.0,
        val_top1=91.0,
        final_train_loss=0.2,
        label_fraction=0.1,
        dataset=DIGITS,
        **at,
    )
    scratch = write(
        tmp_path / "scratch", program="finetune", top1=80.0, label_fraction=0.1,
        dataset=DIGITS, encoder="random_init", pretrained=run, seed=0,
    )  # fmt: skip
    old = write(tmp_path / "old", program="knn", top1_k20=40.0, **at)  # before results had it
    out = compare.run(config(probe, finetune, scratch, old), str(tmp_path / "cmp"))
    assert out["columns"] == [
        "linear_probe/offline on folder:flowers top1",
        "finetune @10% labels on digits 8px top1",
        "knn on unknown data top1_k20",
    ]
    assert {row["label"]: row["values"] for row in out["rows"]} == {
        "flowers": {
            "linear_probe/offline on folder:flowers top1": 55.0,
            "finetune @10% labels on digits 8px top1": 90.0,
            "knn on unknown data top1_k20": 40.0,
        },
        "flowers (random init)": {"finetune @10% labels on digits 8px top1": 80.0},
    }
    assert "| flowers (random init) | – | 80 | – |" in out["table"]
    assert compare.dataset_label({"name": "tfds", "tfds_name": "cifar10"}) == "cifar10"
    assert compare.dataset_label({"name": "npz", "path": "../data/cifar10/"}) == "npz:cifar10"
    assert compare.dataset_label(None) == "unknown data"


def test_the_plot_draws_random_init_rows_as_reference_lines(runs, tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(compare, "save_figure", lambda fig, path: figures.append(fig) or path)
    inputs = (runs["probe"], runs["knn"], runs["random"])
    compare.run(config(*inputs), str(tmp_path / "cmp"))
    compare.run(config(*inputs, random_init_line=False), str(tmp_path / "cmp"))
    for fig, line in zip(figures, (True, False), strict=True):
        probe_panel = next(ax for ax in fig.axes if ax.get_title() == "linear_probe/offline top1")
        bars = [p.get_height() for p in probe_panel.patches]
        lines = {ln.get_label(): tuple(ln.get_ydata()) for ln in probe_panel.get_lines()}
        if line:  # the random encoder is the level to beat: a dashed line, not a bar
            assert bars == [80.0]
            assert lines == {"simclr (random init)": (50.0, 50.0)}
            assert probe_panel.get_legend() is not None
        else:
            assert bars == [80.0, 50.0] and not lines
