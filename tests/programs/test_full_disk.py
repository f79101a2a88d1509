"""A full disk: the run ends with one line naming the path, keeps its checkpoint, resumes.

A real full filesystem: a 12 MiB tmpfs (needs root; skipped with the reason otherwise),
filled until less than one checkpoint of the tiny run fits.
"""

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from tests.programs.test_launch import REPO

RUN = [
    sys.executable,
    "launch/pretrain.py",
    "--config=configs/simclr_digits.py:runlocal",
    "--config.ckpt.every_steps=2",
    "--config.log.progress=False",
]


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        pytest.skip("no mount command")
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def pretrain(workdir, total_steps):
    return subprocess.run(
        [*RUN, f"--workdir={workdir}", f"--config.total_steps={total_steps}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "XLA_FLAGS": ""},
    )


@pytest.mark.slow  # three tiny runs in fresh processes (about 40 s)
def test_a_full_disk_ends_with_one_line_and_keeps_the_checkpoint(small_disk):
    workdir = small_disk / f"run-{uuid.uuid4().hex[:6]}"
    first = pretrain(workdir, 2)
    assert first.returncode == 0, first.stderr[-2000:]
    step_dir = workdir / "checkpoints" / "2"
    saved = sorted(p.relative_to(step_dir) for p in step_dir.rglob("*"))
    size = sum(p.stat().st_size for p in step_dir.rglob("*") if p.is_file())
    free = shutil.disk_usage(small_disk).free
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * max(0, free - size // 2))  # half a checkpoint is left

    full = pretrain(workdir, 6)
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 1
    assert lines[-1].startswith("Error: no space left on device writing a checkpoint to ")
    assert str(workdir / "checkpoints") in lines[-1] and "checkpoint step 2 is intact" in lines[-1]
    assert len(lines) < 20, "\n".join(lines[:40])
    assert "Traceback" not in full.stderr
    assert not list((workdir / "checkpoints").glob("*tmp*")), "a partial checkpoint is left"
    assert sorted(p.relative_to(step_dir) for p in step_dir.rglob("*")) == saved

    filler.unlink()  # space again: the same command resumes from step 2
    again = pretrain(workdir, 6)
    assert again.returncode == 0, again.stderr[-2000:]
    assert '"start_step": 2' in again.stdout and '"final_step": 6' in again.stdout
