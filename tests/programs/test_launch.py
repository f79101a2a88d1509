"""The launch/ entry points as a user runs them: flags, config overrides, SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = [
    "--config.total_steps=400",
    "--config.data.image_size=8",
    "--config.augment.crop_size=8",
    "--config.data.batch_size=16",
    "--config.model.width=4",
    "--config.log.every_steps=1",
    "--config.ckpt.every_steps=1000",
    "--config.log.progress=False",
]
PROBE = ["--probe_config.probe.epochs=2", "--probe_config.log.progress=False"]


def launch(*args, **kw):
    # The session's XLA cache (tests/conftest.py): runs with equal configs compile once.
    cache = jax.config.jax_compilation_cache_dir
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "XLA_FLAGS": "", "JAX_COMPILATION_CACHE_DIR": cache},
        **kw,
    )


def test_misspelled_config_key_is_an_error(tmp_path):
    proc = launch(
        "launch/pretrain.py",
        "--config=configs/simclr_digits.py:runlocal",
        "--config.data.batchsize=8",
        f"--workdir={tmp_path}",
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "batchsize" in err
    assert not os.path.exists(tmp_path / "checkpoints")


def test_unknown_config_variant_is_an_error(tmp_path):
    proc = launch(
        "launch/pretrain.py", "--config=configs/simclr_digits.py:runlokal", f"--workdir={tmp_path}"
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "runlokal" in err and "runlocal" in err


@pytest.mark.slow  # a pretraining subprocess that compiles (about 15 s)
def test_compilation_cache_flag_fills_the_cache_and_the_results_time_the_first_step(tmp_path):
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    proc = subprocess.run(
        [sys.executable, "launch/pretrain.py", "--config=configs/simclr_digits.py:runlocal"]
        + [*TINY[1:], "--config.total_steps=2", f"--compilation_cache={cache}"]
        + [f"--workdir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**env, "XLA_FLAGS": ""},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert cache.is_dir() and any(cache.iterdir())  # the train step's program, at least
    with open(tmp_path / "run" / "results.json") as f:
        results = json.load(f)
    assert results["first_step_s"] > 0 and results["train_step_compilations"] == 1


@pytest.mark.slow  # a pretraining subprocess (about 12 s); in-process stops run by default
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    workdir = tmp_path / "run"
    proc = launch(
        "launch/pretrain.py",
        "--config=configs/simclr_digits.py:runlocal",
        *TINY,
        f"--workdir={workdir}",
    )
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 240
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"pretraining did not start logging: {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    results = json.loads((workdir / "results.json").read_text())
    stopped = results["interrupted_at"]
    assert 2 <= stopped < 400
    assert sorted(os.listdir(workdir / "checkpoints")) == [str(stopped)]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """``(workdir, stdout)`` of launch/quickstart.py with TINY pretraining and a 2-epoch probe.

    The pretraining config is the SIGTERM test's, so the two share one compilation.
    """
    workdir = tmp_path_factory.mktemp("quickstart")
    proc = launch(
        "launch/quickstart.py",
        f"--workdir={workdir}",
        "--config=configs/simclr_digits.py:runlocal",
        *TINY,
        "--probe_config=configs/linear_probe.py:runlocal",
        *PROBE,
        "--probe_config.seed=3",
    )
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return workdir, out


def test_quickstart_pretrains_probes_and_prints_a_summary(quickstart):
    workdir, out = quickstart
    summary = json.loads((workdir / "results.json").read_text())
    ssl, rand = summary["probes"]["ssl"], summary["probes"]["random_init"]
    assert ssl["encoder"] == "pretrained" and ssl["step"] == 400  # --config.total_steps
    assert rand["encoder"] == "random_init" and rand["seed"] == 3  # --probe_config.seed
    for name, probe in (("ssl", ssl), ("random_init", rand)):
        assert probe["num_test"] == 360 and 0 <= probe["top1"] <= probe["top5"] <= 100
        assert json.loads((workdir / f"probe_{name}" / "results.json").read_text()) == probe
    assert summary["ssl_top1"] == ssl["top1"] and summary["random_init_top1"] == rand["top1"]
    assert summary["checkpoint"] == str(workdir / "pretrain" / "checkpoints")
    assert os.listdir(summary["checkpoint"]) == ["400"]
    with open(summary["loss_curve"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert f"SimCLR encoder       top-1 {ssl['top1']:6.2f}%" in out
    assert f"random-init encoder  top-1 {rand['top1']:6.2f}%" in out
    assert f"Checkpoint: {summary['checkpoint']}" in out
    assert "Linear probe (offline protocol)" in out and ssl["protocol"] == "offline"


def printed_results(proc, workdir):
    """The JSON a probe launch prints, checked equal to its WORKDIR/results.json."""
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    results = json.loads(out)
    assert json.loads((workdir / "results.json").read_text()) == results
    return results


def test_linear_probe_launch_prints_and_writes_its_results(quickstart, tmp_path):
    workdir, _ = quickstart
    proc = launch(
        "launch/linear_probe.py",
        "--config=configs/linear_probe.py:runlocal",
        f"--config.pretrained={workdir / 'pretrain'}",
        *(flag.replace("--probe_config", "--config") for flag in PROBE),
        "--config.seed=3",
        f"--workdir={tmp_path}",
    )
    results = printed_results(proc, tmp_path)
    assert results["encoder"] == "pretrained" and results["step"] == 400
    assert results["num_train"] == 1437 and results["num_test"] == 360
    # The quickstart probed the same checkpoint with the same config, seed 3 included.
    quick = json.loads((workdir / "results.json").read_text())["probes"]["ssl"]
    assert results["top1"] == quick["top1"]
    assert results["final_train_loss"] == pytest.approx(quick["final_train_loss"], rel=1e-6)


def test_knn_launch_prints_and_writes_its_results(quickstart, tmp_path):
    workdir, _ = quickstart
    proc = launch(
        "launch/knn.py",
        "--config=configs/knn.py",
        f"--config.pretrained={workdir / 'pretrain'}",
        "--config.knn.k=(5, 10)",
        "--config.log.progress=False",
        f"--workdir={tmp_path}",
    )
    results = printed_results(proc, tmp_path)
    accuracies = {"top1_k5", "top5_k5", "top1_k10", "top5_k10"}  # --config.knn.k
    assert {k for k in results if k.startswith("top")} == accuracies
    assert results["encoder"] == "pretrained" and results["step"] == 400
    assert results["top1_k10"] > 30, results  # 10 classes: chance is 10%


def test_compare_launch_prints_one_table_of_the_quickstart_probes(quickstart, tmp_path):
    workdir, _ = quickstart
    proc = launch(
        "launch/compare.py",
        "--config=configs/compare.py",
        f"--config.glob={workdir / 'probe_*'}",
        f"--workdir={tmp_path}",
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert out == (tmp_path / "compare.md").read_text() + "\n"  # print's newline
    probes = json.loads((workdir / "results.json").read_text())["probes"]
    # Rows are the encoders: the run's pretraining workdir and its random-init baseline.
    assert out.splitlines()[0] == "| encoder | linear_probe/offline top1 |"
    assert f"| pretrain (random init) | {probes['random_init']['top1']:.4g} |" in out
    assert f"| pretrain | {probes['ssl']['top1']:.4g} |" in out
    assert os.path.exists(tmp_path / "compare.png") and os.path.exists(tmp_path / "compare.json")


def test_a_placeholder_field_can_be_unset_with_none(tmp_path):
    base = [
        "launch/convert_data.py",
        "--config=configs/convert_data.py:runlocal",
        "--config.progress=False",
        "--config.splits=test",
    ]
    proc = launch(
        *base,
        "--config.data.image_size=8",
        "--config.data.image_size=None",
        f"--workdir={tmp_path / 'a'}",
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["splits"]["test"]["image_shape"] == [32, 32, 3]  # the digits' default size
    proc = launch(*base, "--config.shard_size=None", f"--workdir={tmp_path / 'b'}")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "--config.shard_size=None: shard_size cannot be None (its default is 500)" in err


def test_switching_the_method_by_override_takes_its_defaults(tmp_path):
    base = ["launch/pretrain.py", "--config=configs/simclr_digits.py:runlocal", *TINY]
    proc = launch(
        *base,
        "--config.method.name=byol",
        "--config.method.temperature=0.1",
        f"--workdir={tmp_path / 'bad'}",
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "--config.method.name=byol: method.name='byol' has no field(s) ['temperature']" in err
    proc = launch(
        *base,
        "--config.total_steps=2",
        "--config.method.name=byol",
        "--config.method.base_momentum=0.9",
        f"--workdir={tmp_path / 'byol'}",
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    from ssl_jax.checkpoint import read_config
    from ssl_jax.methods import hyperparameters

    method = read_config(tmp_path / "byol")["method"]
    assert method == {**hyperparameters("byol"), "name": "byol", "base_momentum": 0.9}
