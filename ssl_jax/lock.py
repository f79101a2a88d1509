"""One run per workdir: ``with workdir_lock(workdir): ...`` (process 0 of a program).

The lock is ``WORKDIR/.ssl_jax.lock``, a small JSON file naming its holder (host, pid, start
time, command), refreshed every :data:`REFRESH_S` seconds by a thread while the run lives and
deleted when it ends. Another run on the same workdir:

- finds a lock whose holder is a live process on this host, or a fresh lock from another host:
  it exits with one line naming the holder (another host's lock is waited for up to
  :data:`STALE_S` first, since a preempted run's replacement may start there before the old
  lock ages);
- finds a lock left by a dead process of this host (kill -9, a crash), or one not refreshed
  for :data:`STALE_S` seconds (a lost host): it takes it over and says so.

Local workdirs are locked atomically (``O_EXCL``); on an object store (``gs://``) creation is
check-then-write, so two runs started within the same second could both pass.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time

from etils import epath

from ssl_jax.paths import is_remote

log = logging.getLogger(__name__)

NAME = ".ssl_jax.lock"
REFRESH_S = 10.0
STALE_S = 90.0


class WorkdirLocked(RuntimeError):
    """Another live run holds the workdir; the message names it."""


def _holder() -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "refreshed": time.time(),
        "command": " ".join(sys.argv)[:500],
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: epath.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {}  # half-written or damaged: treated as stale


def _create(path: epath.Path, holder: dict) -> bool:
    """Write the lock if there is none; False if one exists."""
    text = json.dumps(holder)
    if is_remote(path):
        if path.exists():
            return False
        path.write_text(text)
        return True
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def _describe(other: dict) -> str:
    age = time.time() - other.get("refreshed", 0)
    return (
        f"pid {other.get('pid')} on {other.get('host')}, refreshed {age:.0f} s ago, running "
        f"{other.get('command', '?')!r}"
    )


def _stale(other: dict) -> str | None:
    """Why ``other``'s lock no longer holds, or None when its run looks alive."""
    if not other:
        return "a damaged lock file"
    if other.get("host") == socket.gethostname():
        pid = int(other.get("pid", -1))
        if pid == os.getpid():  # a restarted container reuses pids: the holder is gone
            return f"process {pid} is this one, restarted"
        return None if _alive(pid) else f"process {pid} is gone"
    if time.time() - other.get("refreshed", 0) > STALE_S:
        return f"not refreshed for more than {STALE_S:.0f} s"
    return None


def acquire(workdir: epath.PathLike, *, wait_s: float = STALE_S) -> dict:
    """Take the lock of ``workdir`` (see the module docstring); returns the holder record."""
    path = epath.Path(workdir) / NAME
    holder = _holder()
    deadline = time.monotonic() + wait_s
    while not _create(path, holder):
        other = _read(path)
        if other is None:
            continue  # released meanwhile
        reason = _stale(other)
        if reason is not None:
            log.warning(
                "Taking over the lock of %s from %s: %s.", workdir, _describe(other), reason
            )
            path.unlink(missing_ok=True)
            continue
        same_host = other.get("host") == socket.gethostname()
        if same_host or time.monotonic() > deadline:
            raise WorkdirLocked(
                f"{workdir} is in use by another run ({_describe(other)}); wait for it to end, "
                f"use another --workdir, or delete {path} if that run is gone."
            )
        log.warning(
            "%s is locked by %s; waiting for it to end or go stale.", workdir, _describe(other)
        )
        time.sleep(REFRESH_S)
    return holder


def release(workdir: epath.PathLike, holder: dict) -> None:
    path = epath.Path(workdir) / NAME
    other = _read(path)
    if other and other.get("pid") == holder["pid"] and other.get("host") == holder["host"]:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def workdir_lock(workdir: epath.PathLike):
    """Hold ``workdir``'s lock for the block (refreshing it), then release it."""
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    holder = acquire(workdir)
    stop = threading.Event()
    path = epath.Path(workdir) / NAME

    def refresh() -> None:
        while not stop.wait(REFRESH_S):
            holder["refreshed"] = time.time()
            with contextlib.suppress(OSError):
                path.write_text(json.dumps(holder))

    thread = threading.Thread(target=refresh, name="ssl_jax-lock", daemon=True)
    thread.start()
    try:
        yield holder
    finally:
        stop.set()
        thread.join()
        release(workdir, holder)
