"""Two local processes x 4 CPU devices (with data workers, the state split over the 8 devices:
FSDP) give the losses of one process x 8 devices (without workers, replicated), and their
sharded checkpoint restores into one process."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from ssl_jax import checkpoint
from tests.programs.test_launch import REPO
from tests.programs.test_pretrain import restore_raw

FLAGS = [
    "--config=configs/simclr_digits.py:runlocal",
    "--config.total_steps=3",
    "--config.data.image_size=8",
    "--config.augment.crop_size=8",
    "--config.data.batch_size=16",
    "--config.model.width=4",
    "--config.log.every_steps=1",
    "--config.ckpt.every_steps=3",
    "--config.log.progress=False",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def tail(stderr: str) -> str:
    """The end of a failed process's stderr, without the list of extension modules that
    Python's fatal-error handler appends (it hides the reason, e.g. an abort's message)."""
    return stderr.split("\nExtension modules:")[0][-3000:]


def start_two_processes(cmd: list[str], workdir, env: dict) -> list[subprocess.Popen]:
    """``cmd`` as processes 0 and 1 of a two-process run (4 CPU devices each) on this machine."""
    port = free_port()
    return [
        subprocess.Popen(
            [
                *cmd,
                "--cpu_devices=4",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
                f"--workdir={workdir}",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]


def losses(workdir) -> dict:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    env = {**os.environ, "XLA_FLAGS": ""}
    cmd = [sys.executable, "launch/pretrain.py", *FLAGS]
    single = subprocess.run(
        [*cmd, "--cpu_devices=8", f"--workdir={tmp_path / 'single'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, tail(single.stderr)
    # The two processes read their blocks through data worker processes, the single one
    # through a thread: the batches, and so the losses, must not depend on it.
    fsdp = ["--config.mesh.fsdp=True", "--config.mesh.fsdp_min_size=0"]
    procs = start_two_processes([*cmd, "--config.data.workers=1", *fsdp], tmp_path / "multi", env)
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, tail(err)
    want, got = losses(tmp_path / "single"), losses(tmp_path / "multi")
    assert sorted(got) == [1, 2, 3]
    np.testing.assert_allclose([got[s] for s in got], [want[s] for s in got], rtol=2e-5)
    assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == ["3"]
    # The checkpoint the two processes wrote shard by shard, read back whole by this one.
    whole, _ = restore_raw(str(tmp_path / "single"), 3)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), whole)
    ckpt = checkpoint.Checkpointer(str(tmp_path / "multi"), read_only=True)
    try:
        split, _ = ckpt.restore(3, target)
    finally:
        ckpt.close()
    paths = jax.tree_util.tree_leaves_with_path(whole)
    for (path, a), b in zip(paths, jax.tree.leaves(split), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4, err_msg=jax.tree_util.keystr(path))
