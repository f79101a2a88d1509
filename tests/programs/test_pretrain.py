import json
import os
import re

import numpy as np
import pytest

from ssl_jax import checkpoint, methods
from ssl_jax.data import DataError
from ssl_jax.metrics import read_metrics
from ssl_jax.programs import knn, linear_probe, pretrain
from tests.programs.tiny import tiny_pretrain_config, tiny_probe_config


def losses(workdir):
    return {r["step"]: r["loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    config = tiny_pretrain_config(
        **{"total_steps": 6, "evals.knn.every_steps": 3, "evals.knn.k": (5, 20)}
    )
    results = pretrain.run(config, workdir)
    return workdir, results


def test_pretrain_writes_metrics_checkpoints_and_results(pretrained):
    workdir, results = pretrained
    rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for row in rows:
        assert {"step", "loss", "learning_rate", "images_per_sec"} <= row.keys()
        assert np.isfinite(row["loss"]) and row["images_per_sec"] > 0
    knn_rows = {r["step"]: r["knn_top1_k20"] for r in rows if "knn_top1_k20" in r}
    assert sorted(knn_rows) == [3, 6] and all(10 < v <= 100 for v in knn_rows.values())
    assert all("knn_top1_k5" in r for r in rows if r["step"] in (3, 6))
    assert checkpoint.resolve_step(workdir) == 6
    assert results["final_step"] == 6
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["final_step"] == 6
    saved = checkpoint.read_config(workdir)
    assert saved["model"]["width"] == 4 and saved["data"]["name"] == "digits"


def test_probe_and_knn_read_the_encoder_export(pretrained, tmp_path):
    workdir, _ = pretrained
    ssl = linear_probe.run(tiny_probe_config(workdir), str(tmp_path / "probe"))
    rand = linear_probe.run(tiny_probe_config(workdir, random_init=True), str(tmp_path / "rnd"))
    assert ssl["split"] == "test" and ssl["encoder"] == "pretrained" and ssl["step"] == 6
    assert rand["encoder"] == "random_init"
    assert ssl["num_test"] == 360 and ssl["num_train"] == 1437
    assert 0 <= ssl["top1"] <= ssl["top5"] <= 100
    assert ssl["top1"] != rand["top1"] or ssl["final_train_loss"] != rand["final_train_loss"]
    with open(tmp_path / "probe" / "results.json") as f:
        assert json.load(f)["top1"] == ssl["top1"]
    res = knn.run(tiny_probe_config(workdir), str(tmp_path / "knn"))
    assert {"top1_k5", "top1_k20", "top5_k20"} <= res.keys()
    assert res["top1_k20"] > 30  # 10 classes: chance is 10%


def test_resume_continues_the_same_trajectory(pretrained, tmp_path):
    reference, _ = pretrained
    workdir = str(tmp_path / "interrupted")
    config = tiny_pretrain_config(**{"total_steps": 6})
    first = pretrain.run(config, workdir, should_stop=lambda step: step == 3)
    assert first["interrupted_at"] == 3
    assert checkpoint.resolve_step(workdir) == 3
    second = pretrain.run(config, workdir)
    assert second["start_step"] == 3 and second["final_step"] == 6
    got, want = losses(workdir), losses(reference)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([got[s] for s in got], [want[s] for s in got], rtol=1e-6)


def test_resume_from_and_init_from_another_run(pretrained, tmp_path):
    reference, _ = pretrained
    interrupted = str(tmp_path / "interrupted")
    config = tiny_pretrain_config(**{"total_steps": 6})
    pretrain.run(config, interrupted, should_stop=lambda step: step == 3)
    fresh = str(tmp_path / "fresh")
    resumed = pretrain.run(
        tiny_pretrain_config(**{"total_steps": 6, "ckpt.resume_from": interrupted}), fresh
    )
    assert resumed["start_step"] == 3
    got, want = losses(fresh), losses(reference)
    assert sorted(got) == [4, 5, 6]
    np.testing.assert_allclose([got[s] for s in got], [want[s] for s in got], rtol=1e-6)
    assert checkpoint.resolve_step(interrupted) == 3  # the source run is left as it was

    init = pretrain.run(
        tiny_pretrain_config(**{"total_steps": 6, "ckpt.init_from": reference}),
        str(tmp_path / "init"),
    )
    assert init["start_step"] == 0
    # Same seed and data as the reference run, but starting from its trained params.
    assert losses(str(tmp_path / "init"))[1] < want[1] - 0.05


def test_one_and_eight_devices_give_the_same_trajectory(tmp_path):
    runs = {}
    for n in (1, 8):
        config = tiny_pretrain_config(**{"total_steps": 3, "mesh.num_devices": n})
        pretrain.run(config, str(tmp_path / f"dev{n}"))
        runs[n] = losses(str(tmp_path / f"dev{n}"))
    assert sorted(runs[1]) == [1, 2, 3]
    np.testing.assert_allclose(
        [runs[8][s] for s in (1, 2, 3)], [runs[1][s] for s in (1, 2, 3)], rtol=2e-5
    )


def test_non_finite_loss_stops_and_keeps_good_checkpoints(tmp_path):
    workdir = str(tmp_path / "nan")
    pretrain.run(tiny_pretrain_config(**{"total_steps": 2}), workdir)
    step_dir = os.path.join(workdir, "checkpoints", "2")
    before = sorted(os.listdir(step_dir))
    bad = tiny_pretrain_config(
        **{"total_steps": 6, "optim.base_learning_rate": 1e38, "ckpt.every_steps": 1}
    )
    with pytest.raises(pretrain.NonFiniteLossError, match=r"at step (\d+)") as err:
        pretrain.run(bad, workdir)
    failed = int(re.search(r"at step (\d+)", str(err.value)).group(1))
    assert 3 <= failed <= 6
    last_good = checkpoint.resolve_step(workdir)
    assert last_good == failed - 1  # every finite step was saved, the failed one was not
    assert f"up to step {last_good}" in str(err.value)
    assert sorted(os.listdir(step_dir)) == before


def test_a_method_diagnosis_is_logged_once_and_kept_in_results(tmp_path, monkeypatch, caplog):
    seen = []

    def get_method(config, **kwargs):
        def diagnose(row):
            seen.append(row["step"])
            return "the loss looks odd" if row["step"] >= 2 else None

        return methods.get_method(config, **kwargs)._replace(diagnose=diagnose)

    monkeypatch.setattr(pretrain, "get_method", get_method)
    workdir = str(tmp_path / "w")
    with caplog.at_level("WARNING", logger=pretrain.__name__):
        results = pretrain.run(tiny_pretrain_config(**{"total_steps": 4}), workdir)
    assert seen == [1, 2]  # every logged row until the first warning, then no more
    assert results["warnings"] == ["step 2: the loss looks odd"]
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["warnings"] == results["warnings"]
    assert [r.getMessage() for r in caplog.records] == ["Step 2: the loss looks odd"]


def test_bad_data_fails_at_start_with_the_path(tmp_path):
    missing = str(tmp_path / "no_such_folder")
    config = tiny_pretrain_config(**{"data.name": "npz", "data.path": missing})
    with pytest.raises(DataError, match="no_such_folder"):
        pretrain.run(config, str(tmp_path / "w"))


def test_bad_config_values_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not split over 8 devices"):
        pretrain.run(tiny_pretrain_config(**{"data.batch_size": 12}), str(tmp_path / "a"))
    with pytest.raises(ValueError, match="method.name='simclrr'.*simclr"):
        pretrain.run(tiny_pretrain_config(**{"method.name": "simclrr"}), str(tmp_path / "b"))
    with pytest.raises(AttributeError):
        tiny_pretrain_config().data.batchsize = 3  # locked: a typo cannot add a field


def test_probe_without_pretrained_dir_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="config.pretrained"):
        linear_probe.run(tiny_probe_config(""), str(tmp_path))
    with pytest.raises(checkpoint.CheckpointError, match="No checkpoint"):
        linear_probe.run(tiny_probe_config(str(tmp_path)), str(tmp_path / "p"))
