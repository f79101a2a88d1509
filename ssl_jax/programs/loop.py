"""The one training loop: steps, stop on SIGTERM, the non-finite policy, log, evaluate, save.

Every training program (pretraining now; fine-tuning and distillation next) builds its
train step, state, data and checkpointer, then calls :func:`train`. The loop owns what they
share: the progress bar and the metrics writer's rows, throughput, periodic evaluation, a
method's one-time diagnosis, a checkpoint after every step the checkpointer's policy picks
(forced at the last step and when stopping), a clean stop on SIGTERM or preemption, and the
non-finite policy (a NaN/inf loss, gradient norm or parameter stops the run before anything
of that step is logged or saved).
"""

import collections
import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from ssl_jax import liveness
from ssl_jax.checkpoint import Checkpointer
from ssl_jax.metrics import MetricsWriter
from ssl_jax.parallel import global_batch

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss, the gradient norm or the parameters became NaN or infinite."""


class StopFlag:
    """Whether to stop after a step: SIGTERM (or a caller's predicate), checked once per step.

    One process: a Python SIGTERM handler sets a flag. Several processes: the stop is a
    collective decision. JAX's preemption service (started by ``jax.distributed.initialize``)
    keeps its own SIGTERM handler, tells every process when any of them is signalled, and
    :func:`~jax.experimental.multihost_utils.reached_preemption_sync_point` becomes true at
    the same step on all of them (the largest step any process has reached, plus one). A
    Python handler would replace JAX's, so each process would stop on its own flag at its own
    step and the other would wait in its next collective forever: none is installed then.
    """

    def __init__(self, should_stop: Callable[[int], bool] | None, start: int = 0):
        self.should_stop = should_stop
        self.start = start
        self.signalled = False
        self.collective = False
        self._previous = None

    def __enter__(self):
        self.collective = jax.process_count() > 1
        if self.collective:
            check_preemption_service(self.start)
        elif threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.signalled = True

    def __call__(self, step: int) -> bool:
        if self.collective and multihost_utils.reached_preemption_sync_point(step):
            self.signalled = True
        return self.signalled or (self.should_stop is not None and self.should_stop(step))

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def check_preemption_service(start: int) -> None:
    """A multi-process run needs JAX's preemption service to stop every process together
    (every process reports its start step to it)."""
    try:
        multihost_utils.reached_preemption_sync_point(start)
    except RuntimeError as e:
        raise RuntimeError(
            "A multi-process run stops on SIGTERM through JAX's preemption service, which is "
            "off: remove jax_enable_preemption_service=False (JAX_ENABLE_PREEMPTION_SERVICE) "
            f"before jax.distributed.initialize(). ({e})"
        ) from None


def on_devices(host_batches: Iterator[tuple[int, dict]], mesh, ahead: int = 1):
    """``(step, global batch)`` over ``mesh`` from a process's ``(step, local batch)`` stream,
    ``ahead`` batches already sent to the devices while a step runs. Closing it closes
    ``host_batches`` (and so the pipeline's workers)."""
    sent = collections.deque()
    try:
        for step, local in host_batches:
            sent.append((step, global_batch(local, mesh)))
            if len(sent) > ahead:
                yield sent.popleft()
    finally:
        close = getattr(host_batches, "close", None)
        if close is not None:
            close()


@dataclasses.dataclass
class Loop:
    """What a program hands to :func:`train`.

    - ``train_step(state, global_batch) -> (state, metrics)``; ``metrics`` holds ``loss``,
      ``grad_norm`` and ``params_finite`` (the non-finite policy reads them) and any rows.
    - ``batches``: yields ``(step, global_batch)`` from ``start`` (:func:`on_devices`); the
      loop closes it when it ends.
    - ``save(step, state, force)``: checkpoint ``state`` after ``step`` steps if due (or
      ``force``).
    - ``evaluates(step) -> bool``: whether ``evaluate`` has columns at ``step``; such a step
      is written to the metrics like a logged one, whatever ``log_every`` is.
    - ``evaluate(step, state) -> dict``: the extra metric columns at such a step.
    - ``diagnose(row) -> str | None``: a warning from a logged row, reported once per run.
    """

    train_step: Callable[[Any, Any], tuple[Any, dict]]
    batches: Iterator[tuple[int, Any]]
    save: Callable[[int, Any, bool], Any]
    total_steps: int
    batch_size: int
    steps_per_epoch: int
    log_every: int
    evaluates: Callable[[int], bool] = lambda step: False
    evaluate: Callable[[int, Any], dict] = lambda step, state: {}
    diagnose: Callable[[dict], str | None] | None = None
    progress: bool = True
    desc: str = "train"


def train(
    loop: Loop,
    state,
    start: int,
    *,
    ckpt: Checkpointer,
    writer: MetricsWriter,
    workdir: str,
    should_stop: Callable[[int], bool] | None = None,
) -> tuple[Any, dict]:
    """Run ``loop`` from ``state`` at step ``start``; returns ``(state, results)``.

    ``results`` has ``final_step``, ``wall_time_s``, ``first_step_s`` (the first step's wall
    time: compilation included, unless the persistent cache held the program), the last logged
    row's columns, and
    ``interrupted_at`` (stopped by SIGTERM or ``should_stop(step)``) and ``warnings``
    (a diagnosis) when they happened. Raises :class:`NonFiniteLossError` with the step.
    """
    total = loop.total_steps
    results: dict[str, Any] = {}
    step, last_row, warned = start, {}, False
    t_log, n_log = time.perf_counter(), 0
    t_start = time.perf_counter()
    bar = tqdm(
        total=total,
        initial=start,
        desc=loop.desc,
        disable=not loop.progress or jax.process_index() != 0,
        dynamic_ncols=True,
    )
    pending = None  # (step, metrics) dispatched but not yet checked
    liveness.set_status(lambda: stop_status(step, ckpt, workdir))
    try:
        with StopFlag(should_stop, start) as stop:
            while step < total:
                _, batch = next(loop.batches)
                state, metrics = loop.train_step(state, batch)
                step += 1
                n_log += 1
                if pending is not None:  # the step before: waits for it, not for this one
                    show_loss(bar, check_finite(pending[1], pending[0], ckpt, workdir))
                pending = (step, metrics)
                evaluating = loop.evaluates(step)
                logging_now = step % loop.log_every == 0 or step == total or evaluating
                stopping = stop(step)
                if not (step == start + 1 or logging_now or stopping or ckpt.due(step)):
                    continue  # nothing reads this step yet: the host runs ahead
                loss = check_finite(metrics, step, ckpt, workdir)  # waits for this step
                pending = None
                show_loss(bar, loss)
                if step == start + 1:
                    results["first_step_s"] = time.perf_counter() - t_start
                if logging_now:
                    elapsed = time.perf_counter() - t_log
                    row = {"loss": loss, **metrics, "epoch": step / loop.steps_per_epoch}
                    row["images_per_sec"] = n_log * loop.batch_size / max(elapsed, 1e-9)
                    if evaluating:
                        row.update(loop.evaluate(step, state))
                    last_row = writer.write(step, row)
                    warning = loop.diagnose(last_row) if loop.diagnose and not warned else None
                    if warning:
                        warned = True
                        log.warning("Step %d: %s", step, warning)
                        results["warnings"] = [f"step {step}: {warning}"]
                    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{row['images_per_sec']:.0f}")
                    if not loop.progress and jax.process_index() == 0:  # batch jobs' logs
                        log.info(
                            "%s step %d/%d: loss %.4f, %.0f images/s",
                            loop.desc,
                            step,
                            total,
                            loss,
                            row["images_per_sec"],
                        )
                    t_log, n_log = time.perf_counter(), 0
                loop.save(step, state, stopping or step == total)
                if stopping:
                    log.info("Stop requested: saved step %d to %s", step, workdir)
                    results["interrupted_at"] = step
                    break
    finally:
        bar.close()
        close = getattr(loop.batches, "close", None)
        if close is not None:
            close()
    results.update(
        final_step=step,
        wall_time_s=time.perf_counter() - t_start,
        **{k: v for k, v in last_row.items() if k != "step"},
    )
    return state, results


def stop_status(step: int, ckpt: Checkpointer, workdir) -> str:
    """Where a run stands, for the line a multi-process run stops with."""
    latest = ckpt.latest_step()
    saved = f"checkpoint step {latest} is intact" if latest is not None else "no checkpoint yet"
    return f"at step {step}; {saved} in {workdir}: rerun the same command to resume"


def show_loss(bar, loss: float) -> None:
    bar.update(1)
    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)


def check_finite(metrics: dict, step: int, ckpt: Checkpointer, workdir: str) -> float:
    """The step's loss as a float; pops ``loss`` and ``params_finite`` from ``metrics``.

    Raises :class:`NonFiniteLossError` when the loss, the gradient norm or the parameters
    are not finite, after waiting for saves in flight (so the message's last good step is
    on disk).
    """
    loss, gnorm, finite = jax.device_get(
        (metrics.pop("loss"), metrics["grad_norm"], metrics.pop("params_finite"))
    )
    loss = float(loss)
    if not (np.isfinite(loss) and np.isfinite(gnorm) and finite):
        ckpt.wait()
        raise NonFiniteLossError(
            f"Non-finite loss ({loss}), gradient norm ({gnorm}) or parameters "
            f"(finite: {bool(finite)}) at step {step}. Checkpoints up to step "
            f"{ckpt.latest_step()} in {workdir} are intact and nothing was saved "
            "after the failure. Try a lower optim.base_learning_rate, "
            "optim.grad_clip_norm=1.0, a longer warmup, or check the data."
        )
    return loss
