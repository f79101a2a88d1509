"""Self-supervised pretraining: ``run(config, workdir)``.

Resume order: the workdir's own newest checkpoint, else ``ckpt.resume_from``'s, else
``ckpt.init_from``'s, else scratch. Resuming continues the interrupted loss trajectory
exactly: the data order, the step RNG (``fold_in(key, step)``) and the state are all
functions of the checkpoint.

``ckpt.init_from`` starts a new run (step 0) from another run's newest checkpoint: it takes
the parameters *and* the method state (EMA targets, queues, centers, BatchNorm statistics:
trained weights need their own statistics and targets), with a fresh optimizer state and
this run's own seed (step RNG) and data order. The model and method must match the
source's (otherwise a :class:`~ssl_jax.checkpoint.CheckpointError`); the optimizer may
differ, as its saved state is not read.
"""

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from ssl_jax import config as config_lib
from ssl_jax.checkpoint import Checkpointer
from ssl_jax.data import BatchIterator, get_source
from ssl_jax.evaluators import KnnMonitor
from ssl_jax.methods import get_method
from ssl_jax.methods.views import eval_settings
from ssl_jax.metrics import MetricsWriter, truncate_after, write_results
from ssl_jax.optim import make_optimizer, make_schedule
from ssl_jax.parallel import check_batch_size, global_batch, make_mesh
from ssl_jax.train_step import make_init_fn, make_train_step

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss, the gradient norm or the parameters became NaN or infinite."""


class _StopFlag:
    """Set by SIGTERM (or a caller's predicate); checked once per step."""

    def __init__(self, should_stop: Callable[[int], bool] | None):
        self.should_stop = should_stop
        self.signalled = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.signalled = True

    def __call__(self, step: int) -> bool:
        if jax.process_count() > 1:
            # JAX's preemption service sees SIGTERM on any host and agrees on a step.
            if multihost_utils.reached_preemption_sync_point(step):
                return True
        return self.signalled or (self.should_stop is not None and self.should_stop(step))

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _restore_other(run_dir: str, field: str, abstract_state, partial: bool = False):
    """The newest state of another run directory, named by config field ``field``."""
    other = Checkpointer(run_dir, read_only=True)
    step = other.latest_step()
    if step is None:
        raise FileNotFoundError(f"{field}={run_dir!r} holds no checkpoint under checkpoints/.")
    try:
        return (*other.restore(step, abstract_state, partial=partial), step)
    finally:
        other.close()


def _initial_state(config, workdir, ckpt, init_fn, abstract_state):
    """(state, data_state, origin) following the resume order."""
    if ckpt.latest_step() is not None:
        step = ckpt.latest_step()
        state, data_state = ckpt.restore(step, abstract_state)
        return state, data_state, f"resumed from {workdir} at step {step}"
    if config.ckpt.resume_from:
        state, data_state, step = _restore_other(
            config.ckpt.resume_from, "ckpt.resume_from", abstract_state
        )
        return state, data_state, f"resumed from {config.ckpt.resume_from} at step {step}"
    state = init_fn(config.seed)
    if config.ckpt.init_from:
        # Only params and method state are read: the source may use another optimizer.
        parts = {"params": abstract_state.params, "method_state": abstract_state.method_state}
        loaded, _, step = _restore_other(
            config.ckpt.init_from, "ckpt.init_from", parts, partial=True
        )
        state = state.replace(params=loaded["params"], method_state=loaded["method_state"])
        return state, {"step": 0}, f"initialised from {config.ckpt.init_from} (step {step})"
    return state, {"step": 0}, "started from scratch"


def run(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    should_stop: Callable[[int], bool] | None = None,
) -> dict:
    """Pretrain, checkpoint, evaluate; returns (and writes) ``results.json``'s numbers.

    ``should_stop(step)`` lets a caller interrupt the run as SIGTERM would: the state
    after ``step`` steps is checkpointed and the function returns.
    """
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    mesh = make_mesh(config.mesh.num_devices)
    batch_size = config.data.batch_size
    check_batch_size(batch_size, mesh)

    source = get_source(config.data, "train")
    iterator = BatchIterator(
        source,
        global_batch_size=batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    steps_per_epoch = iterator.steps_per_epoch
    total = config_lib.total_steps(config, steps_per_epoch)
    schedule = make_schedule(config, steps_per_epoch=steps_per_epoch, total_steps=total)
    tx = make_optimizer(config.optim, schedule)
    method = get_method(config, total_steps=total)
    init_fn = make_init_fn(method, tx, mesh)
    abstract_state = jax.eval_shape(init_fn, config.seed)
    train_step = make_train_step(method, tx, schedule, mesh)

    ckpt = Checkpointer(
        workdir,
        every_steps=config.ckpt.every_steps,
        keep=config.ckpt.keep,
        async_save=config.ckpt.async_save,
    )
    state, data_state, origin = _initial_state(config, workdir, ckpt, init_fn, abstract_state)
    start = int(jax.device_get(state.step))
    if start and iterator.step_from_state(data_state) != start:
        raise RuntimeError(f"Checkpoint data position {data_state} does not match step {start}.")
    log.info("%s; %d steps of %d images (%d per epoch)", origin, total, batch_size, steps_per_epoch)
    truncate_after(os.path.join(workdir, "metrics.jsonl"), start)
    writer = MetricsWriter(workdir, tensorboard=config.log.tensorboard)
    monitor = None
    if config.evals.knn.every_steps > 0:
        monitor = KnnMonitor(
            config.evals.knn, config.data, method.backbone, eval_settings(config.augment), mesh
        )
    config_json = config.to_dict()

    def save(step, force=False):
        return ckpt.save(
            step,
            state=state,
            encoder=method.export(state.params, state.method_state),
            config=config_json,
            data=iterator.get_state(step),
            force=force,
        )

    results = {"start_step": start, "total_steps": total, "steps_per_epoch": steps_per_epoch}
    step = start
    last_row = {}
    warned = False  # a method's diagnose warning is logged once per run
    t_log, n_log = time.perf_counter(), 0
    t_start = time.perf_counter()
    bar = tqdm(
        total=total,
        initial=start,
        desc="pretrain",
        disable=not config.log.progress or jax.process_index() != 0,
        dynamic_ncols=True,
    )
    batches = iterator.iterate(start)
    try:
        with _StopFlag(should_stop) as stop:
            while step < total:
                _, local = next(batches)
                state, metrics = train_step(state, global_batch(local, mesh))
                step += 1
                n_log += 1
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
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if step % config.log.every_steps == 0 or step == total:
                    elapsed = time.perf_counter() - t_log
                    row = {"loss": loss, **metrics, "epoch": step / steps_per_epoch}
                    row["images_per_sec"] = n_log * batch_size / max(elapsed, 1e-9)
                    if monitor is not None and (
                        step % config.evals.knn.every_steps == 0 or step == total
                    ):
                        row.update(monitor(method.export(state.params, state.method_state)))
                    last_row = writer.write(step, row)
                    warning = method.diagnose(last_row) if method.diagnose and not warned else None
                    if warning:
                        warned = True
                        log.warning("Step %d: %s", step, warning)
                        results["warnings"] = [f"step {step}: {warning}"]
                    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{row['images_per_sec']:.0f}")
                    t_log, n_log = time.perf_counter(), 0
                stopping = stop(step)
                save(step, force=stopping or step == total)
                if stopping:
                    log.info("Stop requested: saved step %d to %s", step, workdir)
                    results["interrupted_at"] = step
                    break
    finally:
        bar.close()
        ckpt.close()
        writer.close()
    results.update(
        final_step=step,
        wall_time_s=time.perf_counter() - t_start,
        **{k: v for k, v in last_row.items() if k != "step"},
    )
    write_results(workdir, results)
    return results
