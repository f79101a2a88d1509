"""A multi-process run watches its processes: a lost or failed one stops the others, in one line.

JAX's coordination service sees every process's heartbeats. In its default mode a lost
process makes every other one abort from a C++ thread (after the heartbeat timeout, 100 s by
default) with a stack trace and no word of which process, step or checkpoint; and a process
that fails alone (an exception on its host only) leaves the others waiting in their next
collective. So a multi-process run starts the service in its recoverable mode (no process is
aborted for another's failure) and each process runs a :class:`Watchdog` thread that asks the
service, twice a second, which processes are alive and whether one has reported a failure.
When one is lost or failed, the others log one line (the lost process, this process's step,
the newest complete checkpoint) and exit with status 1 at once: checkpoints already committed
stay intact (Orbax commits a save by renaming a finished temporary directory).

Orbax and MaxText reach the coordination service's client the same way, through
``jax._src.distributed.global_state``: JAX has no public handle on it.
"""

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

import jax
from jax._src import distributed

log = logging.getLogger(__name__)

EXIT_LOST = 1  # the exit status of a process that stops because another was lost or failed
FAILED_KEY = "ssl_jax/failed/{}"
POLL_S = 0.5
FINISH_BARRIER = "ssl_jax_finish"
FINISH_TIMEOUT_S = 600  # the end of a run: process 0 may still write plots and results
COMPILED_BARRIER = "ssl_jax_compiled_{}"
COMPILE_TIMEOUT_S = 3600  # the slowest process's compilation of a big step


def initialize(
    coordinator_address: str | None,
    num_processes: int | None,
    process_id: int | None,
    *,
    heartbeat_timeout_s: int,
) -> None:
    """``jax.distributed.initialize`` in recoverable mode, then :func:`start` the watchdog."""
    if heartbeat_timeout_s <= 0:
        raise ValueError(f"--heartbeat_timeout_s must be positive, got {heartbeat_timeout_s}.")
    jax.config.update("jax_enable_recoverability", True)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        heartbeat_timeout_seconds=heartbeat_timeout_s,
    )
    if jax.process_count() > 1:
        start(heartbeat_timeout_s)


class Watchdog(threading.Thread):
    """Polls the coordination service; on a lost or failed process, one line and ``_exit``.

    ``get_live_nodes`` returns once every live process has called it: every process's
    watchdog polls until that process exits or disconnects, or the others wait.
    """

    def __init__(self, client, heartbeat_timeout_s: int, exit_fn: Callable[[int], None]):
        super().__init__(name="ssl_jax-watchdog", daemon=True)
        self.client = client
        self.me = jax.process_index()
        self.count = jax.process_count()
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.exit_fn = exit_fn
        self.status: Callable[[], str] = lambda: ""
        self._stop = threading.Event()
        self._once = threading.Lock()  # one line, even when the thread and fail() both see it

    def run(self) -> None:
        while not self._stop.wait(POLL_S):
            problem = self.check()
            if problem and not self._stop.is_set():
                self.stop_process(problem)

    def check(self) -> str | None:
        """What is wrong with the other processes, or None."""
        others = [i for i in range(self.count) if i != self.me]
        try:
            for i in others:  # first: the call below waits for the others' watchdogs
                reason = self.failure_of(i)
                if reason is not None:
                    return f"process {i} of {self.count} failed ({reason})"
            alive = self.client.get_live_nodes(list(range(self.count)))
        except jax.errors.JaxRuntimeError as e:
            if self.me == 0:
                return f"the coordination service failed: {first_line(e)}"
            return (
                f"process 0 of {self.count} (the coordinator, {coordinator()}) is "
                f"unreachable: {first_line(e)}"
            )
        lost = [i for i in others if i not in alive]
        if lost:
            return (
                f"process {', '.join(map(str, lost))} of {self.count} was lost (no heartbeat "
                f"for {self.heartbeat_timeout_s} s)"
            )
        return None

    def failure_of(self, process: int) -> str | None:
        """The failure ``process`` reported (see :func:`fail`), or None."""
        try:
            return self.client.key_value_try_get(FAILED_KEY.format(process))
        except jax.errors.JaxRuntimeError as e:
            if "NOT_FOUND" in str(e):
                return None
            raise

    def stop_process(self, problem: str) -> None:
        with self._once:
            status = self.status()
            print(
                f"Process {self.me}: {problem}; stopping{' ' + status if status else ''}.",
                file=sys.stderr,
                flush=True,
            )
            self.exit_fn(EXIT_LOST)

    def stop(self) -> None:
        self._stop.set()


_watchdog: Watchdog | None = None


def coordinator() -> str:
    return str(distributed.global_state.coordinator_address)


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def start(heartbeat_timeout_s: int, exit_fn: Callable[[int], None] = os._exit) -> Watchdog:
    """Start this process's watchdog (once; a multi-process run only)."""
    global _watchdog
    if _watchdog is None:
        _watchdog = Watchdog(distributed.global_state.client, heartbeat_timeout_s, exit_fn)
        _watchdog.start()
    return _watchdog


def set_status(status: Callable[[], str]) -> None:
    """What the stop line says of this process (e.g. its step and newest checkpoint)."""
    if _watchdog is not None:
        _watchdog.status = status


def compile_together(jitted, *args) -> None:
    """In a multi-process run, compile ``jitted`` for ``args`` ahead of time, then wait until
    every process has: their first collective then starts together.

    Without it, the first step of a process that compiles faster waits for the others inside
    the step's first collective, and on CPU that wait is bounded: Gloo sets up its context
    with a fixed 30 s timeout (a loaded machine, or a slower host, goes past it). The call
    that follows reuses the compiled program. A process lost meanwhile is the watchdog's.
    """
    global _compiled
    if _watchdog is None:
        return
    jitted.lower(*args).compile()
    _compiled += 1
    _watchdog.client.wait_at_barrier(COMPILED_BARRIER.format(_compiled), COMPILE_TIMEOUT_S * 1000)


_compiled = 0  # barriers passed so far: each needs its own name


def run_guarded(fn: Callable[[], object]):
    """``fn()``; in a multi-process run, a failure stops every process, and the end waits
    for all of them.

    An exception here is reported to the other processes (they stop with a line naming this
    process and the error) and this process exits with status 1 after logging its traceback.
    A failed collective (a peer died: Gloo or NCCL errors) first waits, up to the heartbeat
    timeout, for the watchdog to name the lost process.
    """
    if _watchdog is None:
        return fn()
    try:
        result = fn()
        finish()
    except BaseException as e:  # noqa: BLE001 - every failure must stop every process
        fail(e)
    return result


def fail(error: BaseException) -> None:
    """Report ``error`` to the other processes and exit (see :func:`run_guarded`)."""
    dog = _watchdog
    assert dog is not None
    if isinstance(error, jax.errors.JaxRuntimeError):
        log.error("A collective failed (%s); looking for the lost process.", first_line(error))
        dog.join(dog.heartbeat_timeout_s + 5 * POLL_S)  # it exits the process when it finds one
    # The watchdog keeps polling until this process exits: the service answers a process's
    # question "who is alive?" only once every live process has asked it too.
    traceback.print_exception(error, file=sys.stderr)
    try:
        dog.client.key_value_set(FAILED_KEY.format(dog.me), first_line(error))
    except jax.errors.JaxRuntimeError:
        pass  # the service is gone: the others see that on their own
    time.sleep(4 * POLL_S)  # the others read the report before this process (perhaps the
    # coordinator, which holds the service) goes
    dog.stop_process(f"{first_line(error)}")


def finish() -> None:
    """Wait for every process at the end of a run, then disconnect them, process 0 last.

    In recoverable mode JAX's own shutdown barrier does not wait, and process 0 holds the
    coordination service: leaving first, it would make the others' disconnection fail (an
    abort). So the others disconnect first and process 0 waits until they are gone.
    """
    dog = _watchdog
    if dog is None:
        return
    dog.client.wait_at_barrier(FINISH_BARRIER, FINISH_TIMEOUT_S * 1000)
    dog.stop()
    if dog.me != 0:
        jax.distributed.shutdown()
        return
    deadline = time.monotonic() + dog.heartbeat_timeout_s
    while time.monotonic() < deadline:
        if set(dog.client.get_live_nodes(list(range(dog.count)))) == {0}:
            break
        time.sleep(POLL_S / 5)
    jax.distributed.shutdown()
