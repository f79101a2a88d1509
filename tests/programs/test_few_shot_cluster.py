"""The few-shot and clustering programs end to end on the shared tiny pretraining run (the
``pretrained`` fixture of tests/conftest.py: 8x8 digits, width-4 ResNet-18, 6 steps)."""

import importlib.util
import json
import os

import numpy as np
import pytest

from ssl_jax.programs import cluster, few_shot
from tests.programs.tiny import DIGITS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def program_config(name: str, pretrained: str, **fields):
    """``configs/<name>.py:runlocal`` with ``fields`` (dotted keys) set, as overrides would."""
    spec = importlib.util.spec_from_file_location(f"{name}_config", f"{REPO}/configs/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("runlocal")
    fields = {"pretrained": pretrained, "data.batch_size": 64, "log.progress": False, **fields}
    for key, value in fields.items():
        *sections, field = key.split(".")
        section = config
        for part in sections:
            section = section[part]
        section[field] = value
    return config


def test_few_shot_program_writes_results(pretrained, tmp_path):
    workdir, _ = pretrained
    config = program_config(
        "few_shot", workdir, **{"few_shot.episodes": 20, "few_shot.shots": (1, 5)}
    )
    results = few_shot.run(config, str(tmp_path))
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert results["program"] == "few_shot" and results["encoder"] == "pretrained"
    assert results["dataset"] == DIGITS  # the export's, as no data flag says otherwise
    assert results["step"] == 6 and results["all_way"] == 10 and results["episodes"] == 20
    assert results["num_train"] == 1437 and results["num_test"] == 360
    names = [f"{c}_{w}way_{k}shot" for c in ("proto", "logreg") for w in (5, "all") for k in (1, 5)]
    for name in names:
        assert 0 <= results[name] <= 100 and results[f"{name}_ci95"] > 0, name
    # Chance is 20% (5-way) and 10% (all-way). This 6-step encoder's features are nearly
    # collinear (mean cosine ~0.96), 200 episodes gave about 36% and 17% (scikit-learn's
    # NearestCentroid and LogisticRegression on the same episodes agree).
    assert results["proto_5way_5shot"] > 28 and results["logreg_allway_5shot"] > 12, results


def test_few_shot_queries_from_the_train_split(pretrained, tmp_path):
    workdir, _ = pretrained
    fields = {
        "few_shot.episodes": 10,
        "few_shot.shots": (5,),
        "few_shot.ways": (5,),
        "few_shot.query_split": "train",
    }
    results = few_shot.run(program_config("few_shot", workdir, **fields), str(tmp_path))
    assert results["encoder"] == "pretrained" and results["query_split"] == "train"
    assert "num_test" not in results  # the test split is not even encoded
    assert {k for k in results if "way_" in k} == {
        f"{c}_5way_5shot{s}" for c in ("proto", "logreg") for s in ("", "_ci95")
    }


def test_few_shot_impossible_episodes_fail_before_encoding(pretrained, tmp_path):
    workdir, _ = pretrained
    too_many_shots = program_config("few_shot", workdir, **{"few_shot.shots": (500,)})
    with pytest.raises(ValueError, match=r"class \d has 1\d\d train images, K=500 needs 500"):
        few_shot.run(too_many_shots, str(tmp_path))
    too_many_ways = program_config("few_shot", workdir, **{"few_shot.ways": (11,)})
    with pytest.raises(ValueError, match="11-way episodes need 11 classes, but .* has 10"):
        few_shot.run(too_many_ways, str(tmp_path))
    with pytest.raises(ValueError, match="query_split='val'"):
        few_shot.run(program_config("few_shot", workdir, **{"few_shot.query_split": "val"}), "")
    assert not os.path.exists(tmp_path / "results.json")


@pytest.mark.slow  # about 7 s
def test_cluster_program_pretrained_and_random_init(pretrained, tmp_path):
    workdir, _ = pretrained
    ssl = cluster.run(program_config("cluster", workdir), str(tmp_path / "ssl"))
    assert json.loads((tmp_path / "ssl" / "results.json").read_text()) == ssl
    assert ssl["program"] == "cluster" and ssl["split"] == "test" and ssl["k"] == 10
    assert ssl["num_clustered"] == 360 and ssl["encoder"] == "pretrained"
    assert 10 < ssl["acc"] <= 100 and 0 < ssl["nmi"] <= 100 and -50 < ssl["ari"] <= 100
    rand = cluster.run(program_config("cluster", workdir, random_init=True), str(tmp_path / "rand"))
    assert rand["encoder"] == "random_init"
    assert (rand["acc"], rand["nmi"]) != (ssl["acc"], ssl["nmi"])


def test_cluster_on_other_data_and_both_splits(pretrained, tmp_path):
    """``--config.data.*``: the digits at 12 px (the run pretrained at 8 px); the export's
    spec resizes them to its input size. ``k`` and ``split`` overridden."""
    workdir, _ = pretrained
    fields = {
        "data.name": "digits",
        "data.image_size": 12,
        "cluster.split": "both",
        "cluster.k": 20,
    }
    results = cluster.run(program_config("cluster", workdir, **fields), str(tmp_path))
    assert results["num_clustered"] == 1797 and results["k"] == 20
    assert results["data"] == "digits" and results["dataset"] == {**DIGITS, "image_size": 12}
    assert np.isfinite(results["inertia"]) and results["inertia"] > 0


def test_pretraining_runs_both_as_evaluators(pretrained, monkeypatch):
    """The registry builds ``few_shot`` and ``cluster`` entries of ``config.evals`` (the
    defaults of ssl_jax/config.py, switched on) and prefixes their metrics; the two share
    the test split's features (encoded once per evaluation)."""
    from ssl_jax.config import pretrain_defaults
    from ssl_jax.evaluators import Evaluators, features
    from ssl_jax.export import load_export
    from ssl_jax.parallel import make_mesh

    encoded = []
    extract = features.extract_bank
    monkeypatch.setattr(
        features, "extract_bank", lambda *a, **k: encoded.append(a[2].name) or extract(*a, **k)
    )

    workdir, _ = pretrained
    evals = pretrain_defaults().evals
    del evals["knn"], evals["online_linear"]
    evals.few_shot.update(every_steps=5, ways=(5,), shots=(1,), episodes=10, batch_size=64)
    evals.cluster.update(every_steps=5, restarts=2, batch_size=64)
    export = load_export(workdir)
    data = program_config("cluster", workdir).data
    data.update(name="digits", image_size=8)
    evaluators = Evaluators(
        evals, data, export.backbone, export.spec["input"], make_mesh(-1), total_steps=12
    )
    assert sorted(evaluators.due(5)) == ["cluster", "few_shot"] and evaluators.due(6) == []
    row = evaluators(5, export.arrays, None)
    assert len(encoded) == 2  # few-shot's support (train) and queries (test), reused by k-means
    evaluators(5, export.arrays, None)
    assert len(encoded) == 4  # not kept from one evaluation to the next
    assert set(row) == {
        *(f"few_shot_{c}_5way_1shot{s}" for c in ("proto", "logreg") for s in ("", "_ci95")),
        "cluster_acc",
        "cluster_nmi",
        "cluster_ari",
        "cluster_inertia",
    }
    evals.few_shot.shots = (500,)  # impossible: fails when built, not at the first evaluation
    with pytest.raises(ValueError, match="K=500 needs 500"):
        Evaluators(evals, data, export.backbone, export.spec["input"], make_mesh(-1), total_steps=1)
