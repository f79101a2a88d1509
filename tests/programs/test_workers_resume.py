"""Data worker processes in a real run: a SIGTERM to the whole process group (what a
preemption delivers) stops it cleanly, a kill -9 leaves no worker behind, and both resume
the same losses as an uninterrupted run without workers (slow job: several subprocesses)."""

import os
import signal
import subprocess
import time

import numpy as np
import pytest

from tests.programs.test_launch import TINY, launch
from tests.programs.test_multihost_failures import losses

pytestmark = pytest.mark.slow
TOTAL = 40
FLAGS = [
    "launch/pretrain.py",
    "--config=configs/simclr_digits.py:runlocal",
    *TINY,
    f"--config.total_steps={TOTAL}",
    "--config.ckpt.every_steps=5",
]


def run(workdir, workers: int) -> subprocess.Popen:
    return launch(
        *FLAGS, f"--workdir={workdir}", f"--config.data.workers={workers}", start_new_session=True
    )


def workers_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    proc = run(workdir, workers=0)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return losses(workdir)


def interrupt_after(proc, workdir, step: int) -> list[int]:
    """Waits until ``step`` is logged; returns the run's worker processes then."""
    deadline = time.monotonic() + 240
    while max(losses(workdir), default=0) < step:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run never reached its training steps"
        time.sleep(0.1)
    return workers_of(proc.pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill9"])
def test_a_stopped_run_with_workers_resumes_exactly(tmp_path, reference, sig):
    proc = run(tmp_path, workers=2)
    workers = interrupt_after(proc, tmp_path, step=8)
    assert len(workers) >= 2, "the run has no worker processes"
    os.killpg(proc.pid, sig)  # the whole group: the workers get it too
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 0, err[-3000:]
        assert "Stop requested: saved step" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 15
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(w) for w in workers), "a data worker outlived its run"

    resumed = run(tmp_path, workers=2)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    got = losses(tmp_path)
    assert sorted(got) == list(range(1, TOTAL)), "steps missing or repeated"
    np.testing.assert_allclose([got[s] for s in got], [reference[s] for s in got], rtol=1e-6)
