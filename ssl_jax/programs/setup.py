"""What every training program sets up before its loop: mesh, data, optimizer, state, resume.

Pretraining (:mod:`~ssl_jax.programs.pretrain`, and distillation, which is pretraining with a
distillation method) and fine-tuning (:mod:`~ssl_jax.programs.finetune`) train a
:class:`~ssl_jax.method.Method` the same way; only what they train and where its first state
comes from differ. In order:

1. :func:`make_training_mesh`: the device mesh (``config.mesh.num_devices``), checked against
   the global batch sizes the program splits over it;
2. :func:`make_batch_iterator`: this process's batches of the training source (order a
   function of ``(seed, step)``, so a resumed run continues on the same images);
3. :func:`make_optimization`: the run's length (``total_steps``/``epochs``), learning-rate
   schedule and optax optimizer of ``config.optim``;
4. :func:`make_train_fns`: the state's sharding (replicated, or split over the devices with
   ``config.mesh.fsdp``), the jitted ``init(seed)`` that creates it sharded, and the jitted
   train step (:mod:`ssl_jax.train_step`, with ``optim.accumulation_steps`` micro-batches);
5. :func:`make_checkpointer` and :func:`restore_or_start`: the workdir's newest checkpoint,
   else the program's own start, and the check that the saved data position is the step.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import ml_collections
import optax
from etils import epath
from jax.sharding import Mesh

from ssl_jax import accumulation
from ssl_jax import config as config_lib
from ssl_jax.checkpoint import Checkpointer, CheckpointError
from ssl_jax.data import BatchIterator
from ssl_jax.data.base import Source
from ssl_jax.method import Method
from ssl_jax.optim import make_optimizer, make_schedule
from ssl_jax.parallel import check_batch_size, make_mesh
from ssl_jax.sharding import DEFAULT_MIN_SIZE
from ssl_jax.train_step import TrainState, make_init_fn, make_train_step, state_sharding


def make_training_mesh(config: ml_collections.ConfigDict, *batch_sizes: int) -> Mesh:
    """The mesh of ``config.mesh.num_devices`` devices (-1: all); raises ``ValueError`` for a
    global batch size of ``batch_sizes`` that does not split evenly over it."""
    mesh = make_mesh(config.mesh.num_devices)
    for batch_size in batch_sizes:
        check_batch_size(batch_size, mesh)
    return mesh


def make_batch_iterator(source: Source, *, batch_size: int, seed: int) -> BatchIterator:
    """This process's share of global batches of ``batch_size`` images of ``source``, in the
    seeded order of :class:`~ssl_jax.data.BatchIterator`."""
    return BatchIterator(
        source,
        global_batch_size=batch_size,
        seed=seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )


class Optimization(NamedTuple):
    """What :func:`make_optimization` makes."""

    total: int  # steps of the run
    schedule: optax.Schedule
    tx: optax.GradientTransformation


def make_optimization(
    config: ml_collections.ConfigDict, steps_per_epoch: int, *, params: Any = None
) -> Optimization:
    """The run's total steps (:func:`ssl_jax.config.total_steps`), its learning-rate schedule
    and ``config.optim``'s optimizer (:func:`ssl_jax.optim.make_optimizer`; ``params``, an
    abstract parameter tree, checks the parameter groups against it here)."""
    total = config_lib.total_steps(config, steps_per_epoch)
    schedule = make_schedule(config, steps_per_epoch=steps_per_epoch, total_steps=total)
    tx = make_optimizer(config.optim, schedule, params=params)
    return Optimization(total, schedule, tx)


class TrainFns(NamedTuple):
    """What :func:`make_train_fns` makes."""

    sharding: TrainState  # the NamedSharding of every leaf of the state
    init_fn: Callable  # init(seed) -> TrainState, laid out as `sharding`
    train_step: Callable  # train_step(state, batch, frozen=None) -> (state, metrics)


def make_train_fns(
    config: ml_collections.ConfigDict, method: Method, opt: Optimization, mesh: Mesh
) -> TrainFns:
    """The sharded init and jitted train step of ``method`` under ``opt`` over ``mesh``.

    The state is replicated, or with ``config.mesh.fsdp`` split over the data devices (leaves
    of at least ``mesh.fsdp_min_size`` elements; :mod:`ssl_jax.sharding`); the step computes
    ``config.optim.accumulation_steps`` micro-batches in turn (:mod:`ssl_jax.accumulation`,
    which refuses a method whose loss couples the examples of a batch). A config without these
    fields (fine-tuning's) gets a replicated state and one batch per step.
    """
    fsdp = config.mesh.get("fsdp", False)
    min_size = config.mesh.get("fsdp_min_size", DEFAULT_MIN_SIZE)
    sharding = state_sharding(method, opt.tx, mesh, fsdp=fsdp, min_size=min_size)
    steps = config.optim.get("accumulation_steps", 1)
    accumulation.check(method, steps, batch_size=config.data.batch_size, mesh=mesh)
    init_fn = make_init_fn(method, opt.tx, mesh, sharding)
    train_step = make_train_step(
        method, opt.tx, opt.schedule, mesh, sharding, accumulation_steps=steps
    )
    return TrainFns(sharding, init_fn, train_step)


def make_checkpointer(config: ml_collections.ConfigDict, workdir: epath.Path) -> Checkpointer:
    """The workdir's checkpointer, as ``config.ckpt`` says (``every_steps``, ``keep``,
    ``async_save``)."""
    return Checkpointer(
        workdir,
        every_steps=config.ckpt.every_steps,
        keep=config.ckpt.keep,
        async_save=config.ckpt.async_save,
    )


def restore_or_start(
    ckpt: Checkpointer,
    workdir: epath.Path,
    abstract_state: TrainState,
    iterator: BatchIterator,
    start: Callable[[], tuple[TrainState, dict, str]],
) -> tuple[TrainState, int, str]:
    """``(state, step, origin)``: the newest checkpoint of ``ckpt`` (``workdir``'s), restored into
    ``abstract_state``'s structure and sharding, else ``start() -> (state, data_state,
    origin)`` (the program's own: another run's checkpoint, an export, scratch).

    Raises :class:`~ssl_jax.checkpoint.CheckpointError` when a state past step 0 comes with a
    data position (``data_state``, the iterator's saved state) other than its step: the run
    would continue on other images than the interrupted one.
    """
    latest = ckpt.latest_step()
    if latest is not None:
        state, data_state = ckpt.restore(latest, abstract_state)
        origin = f"resumed from {workdir} at step {latest}"
    else:
        state, data_state, origin = start()
    step = int(jax.device_get(state.step))
    if step and iterator.step_from_state(data_state) != step:
        raise CheckpointError(f"Checkpoint data position {data_state} does not match step {step}.")
    return state, step, origin
