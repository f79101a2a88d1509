"""One run per workdir: the lock refuses a live holder, takes over a dead or stale one."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ssl_jax import lock
from tests.data.test_records import convert_command
from tests.programs.test_launch import REPO


def write_lock(workdir, **fields):
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "refreshed": time.time(),
        "command": "python launch/pretrain.py ...",
        **fields,
    }
    (workdir / lock.NAME).write_text(json.dumps(holder))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_lock_is_held_for_the_block_and_released(tmp_path):
    with lock.workdir_lock(tmp_path) as holder:
        assert json.loads((tmp_path / lock.NAME).read_text())["pid"] == holder["pid"]
    assert not (tmp_path / lock.NAME).exists()
    write_lock(tmp_path, pid=os.getppid())  # a live process of this host
    with pytest.raises(lock.WorkdirLocked, match=f"in use by another run \\(pid {os.getppid()}"):
        lock.acquire(tmp_path)
    (tmp_path / lock.NAME).unlink()
    assert not (tmp_path / lock.NAME).exists()


def test_a_dead_holder_on_this_host_is_taken_over(tmp_path, caplog):
    write_lock(tmp_path, pid=dead_pid(), refreshed=time.time())
    with caplog.at_level("WARNING", logger=lock.__name__), lock.workdir_lock(tmp_path):
        pass
    assert "Taking over the lock" in caplog.text and "is gone" in caplog.text


def test_a_lock_with_this_process_pid_is_a_restarted_containers(tmp_path):
    write_lock(tmp_path)  # same host and pid as this process, which has not taken it
    assert lock.acquire(tmp_path, wait_s=0)["pid"] == os.getpid()


def test_a_damaged_lock_is_taken_over(tmp_path):
    (tmp_path / lock.NAME).write_text("{not json")
    with lock.workdir_lock(tmp_path):
        assert json.loads((tmp_path / lock.NAME).read_text())["pid"] == os.getpid()


def test_another_hosts_lock_is_waited_for_then_refused_or_taken_when_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "REFRESH_S", 0.05)
    write_lock(tmp_path, host="tpu-worker-7", pid=1)
    started = time.monotonic()
    with pytest.raises(lock.WorkdirLocked, match="pid 1 on tpu-worker-7"):
        lock.acquire(tmp_path, wait_s=0.3)
    assert time.monotonic() - started >= 0.3  # it waited first
    write_lock(tmp_path, host="tpu-worker-7", pid=1, refreshed=time.time() - lock.STALE_S - 1)
    holder = lock.acquire(tmp_path, wait_s=0)
    assert holder["pid"] == os.getpid()


def test_a_second_program_on_a_held_workdir_exits_with_one_line(tmp_path):
    write_lock(tmp_path)  # this test process, alive, holds it
    cmd = convert_command(tmp_path)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: {tmp_path} is in use by another run (pid {os.getpid()}"), last
    assert not (tmp_path / "manifest.json").exists()
    (tmp_path / lock.NAME).unlink()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / lock.NAME).exists()  # released at the end
