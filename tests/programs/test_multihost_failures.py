"""Preemption and failure of a two-process run, with real local processes (2 x 4 CPU devices).

SIGTERM to both processes (staggered, in both orders) or to one of them stops both at the
same step, checkpoints that step once, and both exit 0; the same command resumes exactly.
A process killed with SIGKILL makes the other exit non-zero within the heartbeat timeout
(process 1 lost: status 1 and one line naming it; process 0, the coordinator, lost: JAX's
client aborts process 1 at once), and the last complete checkpoint resumes.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.programs.test_launch import REPO
from tests.programs.test_multiprocess import start_two_processes, tail

TOTAL = 150
HEARTBEAT_S = 10
FLAGS = [
    "--config=configs/simclr_digits.py:runlocal",
    f"--config.total_steps={TOTAL}",
    "--config.data.image_size=8",
    "--config.augment.crop_size=8",
    "--config.data.batch_size=16",
    "--config.model.width=4",
    "--config.log.every_steps=1",
    "--config.ckpt.every_steps=4",
    "--config.ckpt.keep=2",
    "--config.log.progress=False",
    "--compilation_cache=",  # a cache hit on one process only skews the start-up
    f"--heartbeat_timeout_s={HEARTBEAT_S}",
]
ENV = {**os.environ, "XLA_FLAGS": ""}
TIMEOUT_S = 400

pytestmark = pytest.mark.slow


def start(workdir) -> list[subprocess.Popen]:
    return start_two_processes([sys.executable, "launch/pretrain.py", *FLAGS], workdir, ENV)


def losses(workdir) -> dict:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f.read().splitlines()[:-1])}


def checkpoints(workdir) -> list[int]:
    names = os.listdir(os.path.join(workdir, "checkpoints"))
    return sorted(int(n) for n in names if n.isdigit())


def wait_for_training(procs, workdir, step=6) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while max(losses(workdir), default=0) < step:
        assert time.monotonic() < deadline, "the run never reached its training steps"
        for p in procs:
            assert p.poll() is None, tail(p.communicate()[1])
        time.sleep(0.2)


def finish(procs) -> tuple[list[int], list[str], float]:
    """Exit codes, stderr and the seconds until the last process exited."""
    t0 = time.monotonic()
    codes, errs = [], []
    for p in procs:
        try:
            _, err = p.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a process hung")
        codes.append(p.returncode)
        errs.append(err)
    return codes, errs, time.monotonic() - t0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's losses (one process, 8 devices: the two-process test shows the
    two agree)."""
    workdir = tmp_path_factory.mktemp("reference")
    run = subprocess.run(
        [sys.executable, "launch/pretrain.py", *FLAGS, "--cpu_devices=8", f"--workdir={workdir}"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert run.returncode == 0, tail(run.stderr)
    got = losses(workdir)
    got[TOTAL] = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])["loss"]
    return got


def resume_matches(workdir, reference, stopped_at: int) -> None:
    codes, errs, _ = finish(start(workdir))
    assert codes == [0, 0], [tail(e) for e in errs]
    got = losses(workdir)
    steps = [s for s in got if s > stopped_at]
    assert steps, "the resumed run logged nothing"
    np.testing.assert_allclose([got[s] for s in steps], [reference[s] for s in steps], rtol=2e-5)


@pytest.mark.parametrize("order", [(0, 1), (1,)], ids=str)
def test_sigterm_stops_every_process_at_one_step(tmp_path, reference, order):
    procs = start(tmp_path)
    wait_for_training(procs, tmp_path)
    for i, process in enumerate(order):
        if i:
            time.sleep(2)
        procs[process].send_signal(signal.SIGTERM)
    codes, errs, seconds = finish(procs)
    assert codes == [0, 0], [tail(e) for e in errs]
    stops = [int(e.split("Stop requested: saved step ")[1].split()[0]) for e in errs]
    assert stops[0] == stops[1] < TOTAL
    assert checkpoints(tmp_path)[-1] == stops[0]
    print(f"SIGTERM to {order}: both stopped at step {stops[0]}, exit 0 after {seconds:.1f} s")
    if order == (0, 1):
        resume_matches(tmp_path, reference, stops[0])


# Measured once by hand but not kept in CI (each case costs about 2 min of the slow job):
# SIGTERM to 1 then 0 and to 0 alone (both pass).
def test_a_killed_process_stops_the_other_with_one_line(tmp_path, reference):
    procs = start(tmp_path)
    wait_for_training(procs, tmp_path, step=10)
    procs[1].kill()
    codes, errs, seconds = finish(procs)
    assert codes[1] == -signal.SIGKILL
    assert codes[0] == 1, tail(errs[0])
    assert seconds < HEARTBEAT_S + 15
    last = errs[0].strip().splitlines()[-1]
    assert last.startswith("Process 0: process 1 of 2 "), last
    assert "checkpoint step" in last and "rerun the same command" in last, last
    print(f"kill -9 of process 1: process 0 exit 1 after {seconds:.1f} s: {last}")
    resume_matches(tmp_path, reference, checkpoints(tmp_path)[-1])


def test_a_killed_coordinator_stops_the_other_at_once(tmp_path, reference):
    """Process 0 holds JAX's coordination service: when it dies, JAX's client in process 1
    terminates that process itself (an abort, with its own message) before the watchdog's
    line; the other process still stops at once and the newest checkpoint resumes."""
    procs = start(tmp_path)
    wait_for_training(procs, tmp_path, step=10)
    procs[0].kill()
    codes, errs, seconds = finish(procs)
    assert codes[0] == -signal.SIGKILL
    assert codes[1] != 0
    assert seconds < HEARTBEAT_S + 15
    assert (
        "JAX distributed service detected fatal errors" in errs[1]
        or "Process 1: process 0 of 2 (the coordinator" in errs[1]
    ), tail(errs[1])
    print(f"kill -9 of process 0: process 1 exit {codes[1]} after {seconds:.1f} s")
    resume_matches(tmp_path, reference, checkpoints(tmp_path)[-1])
