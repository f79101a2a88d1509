"""The launch/ entry points as a user runs them: flags, config overrides, SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time

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


def launch(*args, **kw):
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "XLA_FLAGS": ""},
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
