"""The distill program: a student trained against a frozen teacher export, whose arrays never
enter the student's checkpoints, resuming on the same trajectory, exporting a normal encoder."""

import os
import shutil

import numpy as np
import pytest

from ssl_jax.export import read_spec
from ssl_jax.metrics import read_metrics
from ssl_jax.programs import distill, knn
from tests.methods.test_distill import distill_config
from tests.programs.tiny import tiny_probe_config


@pytest.fixture(scope="module")
def distilled(pretrained, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("seed"))
    results = distill.run(distill_config("seed", pretrained[0]), workdir)
    return workdir, results


@pytest.mark.slow  # a distillation run (about 15 s); the methods test runs by default
def test_the_student_trains_and_exports_a_normal_encoder(distilled, pretrained, tmp_path):
    workdir, results = distilled
    assert results["final_step"] == 4 and np.isfinite(results["loss"])
    assert results["program"] == "distill"
    spec = read_spec(workdir)
    assert spec["network"] == "student" and spec["method"] == "seed"
    assert spec["feature_dim"] == 16  # the width-2 student, not the width-4 teacher (32)
    # The checkpoint holds the student's state and the queue, nothing of the teacher's.
    state_dir = os.path.join(workdir, "checkpoints", "4", "state")
    names = " ".join(name for _, dirs, files in os.walk(state_dir) for name in dirs + files)
    assert "teacher" not in names
    out = knn.run(tiny_probe_config(workdir), str(tmp_path / "knn"))
    assert out["feature_dim"] == 16


def test_bad_configs_are_clear_errors(pretrained, tmp_path):
    with pytest.raises(ValueError, match="not a distillation method"):
        distill.run(distill_config("mse", pretrained[0], **{"method.name": "simclr"}), "x")
    config = distill_config("mse", "")
    with pytest.raises(ValueError, match="config.teacher is empty"):
        distill.run(config, str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")


@pytest.mark.slow  # a second run of the student (about 20 s)
def test_resume_reloads_the_teacher_and_continues_the_same_trajectory(
    distilled, pretrained, tmp_path
):
    workdir, _ = distilled
    resumed = str(tmp_path / "resumed")
    shutil.copytree(workdir, resumed)
    shutil.rmtree(os.path.join(resumed, "checkpoints", "4"))  # back to step 2
    distill.run(distill_config("seed", pretrained[0]), resumed)
    want = {r["step"]: r["loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))}
    got = {r["step"]: r["loss"] for r in read_metrics(os.path.join(resumed, "metrics.jsonl"))}
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[s] for s in sorted(got)], [want[s] for s in sorted(want)])


@pytest.mark.slow  # a ClusterFit run (about 20 s)
def test_clusterfit_clusters_once_into_the_workdir_and_trains_the_student(pretrained, tmp_path):
    fields = {"method.num_clusters": 4, "method.kmeans_restarts": 1}
    config = distill_config("clusterfit", pretrained[0], **fields)
    workdir = str(tmp_path / "clusterfit")
    results = distill.run(config, workdir)
    assert results["final_step"] == 4 and np.isfinite(results["loss"])
    assert os.path.exists(os.path.join(workdir, "clusterfit_centroids.npz"))
    rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    assert all(0 <= r["cluster_top1"] <= 100 for r in rows)
    assert read_spec(workdir)["method"] == "clusterfit"
