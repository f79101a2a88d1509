"""Self-supervised pretraining: ``run(config, workdir)``.

Resume order: the workdir's own newest checkpoint, else ``ckpt.resume_from``'s, else
``ckpt.init_from``'s, else scratch. Resuming continues the interrupted loss trajectory
exactly: the data order, the step RNG (``fold_in(key, step)``) and the state are all
functions of the checkpoint.

``ckpt.init_from`` may also name an encoder export without a training state (an imported
checkpoint, ``launch/import_weights.py``): every backbone of the method (online, and the EMA
target where it has one) starts from the export's arrays, the heads from scratch
(:func:`graft_encoder`); the run takes the export's model section, and its input
normalisation unless ``augment.mean`` / ``std`` are set.

``ckpt.init_from`` starts a new run (step 0) from another run's newest checkpoint: it takes
the parameters *and* the method state (EMA targets, queues, centers, BatchNorm statistics:
trained weights need their own statistics and targets), with a fresh optimizer state and
this run's own seed (step RNG) and data order. The model and method must match the
source's (otherwise a :class:`~ssl_jax.checkpoint.CheckpointError`); the optimizer may
differ, as its saved state is not read.
"""

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
import optax
from etils import epath

from ssl_jax import config as config_lib
from ssl_jax.augment.from_config import eval_settings
from ssl_jax.checkpoint import (
    Checkpointer,
    CheckpointError,
    array_shapes,
    has_state,
    read_config,
    read_encoder_spec,
)
from ssl_jax.data import DataError, get_source
from ssl_jax.data.identity import identify
from ssl_jax.evaluators import Evaluators, maybe_with_online_linear
from ssl_jax.export import load_export, make_input_spec, make_spec, read_spec
from ssl_jax.method import Method
from ssl_jax.methods import get_method
from ssl_jax.metrics import MetricsWriter, truncate_after, write_results
from ssl_jax.paths import resolve
from ssl_jax.plotting import plot_image_rows
from ssl_jax.programs.loop import Loop, NonFiniteLossError, on_devices, train
from ssl_jax.programs.setup import (
    make_batch_iterator,
    make_checkpointer,
    make_optimization,
    make_train_fns,
    make_training_mesh,
    restore_or_start,
)
from ssl_jax.sharding import replicate

log = logging.getLogger(__name__)

__all__ = ["NonFiniteLossError", "Step", "build_step", "run"]


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


def _start(config, init_fn, abstract_state):
    """``(state, data_state, origin)`` of a run whose workdir holds no checkpoint yet:
    ``ckpt.resume_from``'s newest, else ``ckpt.init_from``'s parameters and method state, else
    scratch (the rest of the resume order, after the workdir's own checkpoint)."""
    if config.ckpt.resume_from:
        state, data_state, step = _restore_other(
            config.ckpt.resume_from, "ckpt.resume_from", abstract_state
        )
        return state, data_state, f"resumed from {config.ckpt.resume_from} at step {step}"
    state = init_fn(config.seed)
    if config.ckpt.init_from and not _holds_state(config.ckpt.init_from):
        return _start_from_export(config, state)
    if config.ckpt.init_from:
        # Only params and method state are read: the source may use another optimizer.
        parts = {"params": abstract_state.params, "method_state": abstract_state.method_state}
        loaded, _, step = _restore_other(
            config.ckpt.init_from, "ckpt.init_from", parts, partial=True
        )
        state = state.replace(params=loaded["params"], method_state=loaded["method_state"])
        return state, {"step": 0}, f"initialised from {config.ckpt.init_from} (step {step})"
    return state, {"step": 0}, "started from scratch"


def _holds_state(run_dir: str) -> bool:
    """Whether ``run_dir``'s newest checkpoint holds a training state (an imported export,
    ``launch/import_weights.py``, has only the encoder)."""
    other = Checkpointer(run_dir, read_only=True)
    try:
        step = other.latest_step()
    finally:
        other.close()
    if step is None:
        raise FileNotFoundError(
            f"ckpt.init_from={run_dir!r} holds no checkpoint under checkpoints/."
        )
    return has_state(run_dir, step)


def _head_at(method, step: int) -> dict:
    """The spec ``head`` of the export at ``step`` (its teacher temperature follows a
    schedule), or nothing to change when the method exports no head."""
    return {"head": method.head_spec(step)} if method.head_spec else {}


def graft_encoder(tree, encoder: dict) -> tuple[Any, list[str]]:
    """``tree`` with every ``backbone`` entry whose arrays have the shapes of
    ``encoder["params"]`` (or of a non-empty ``encoder["batch_stats"]``) replaced by those
    arrays, placed as the entries they replace (each a buffer of its own: the train step
    donates them); and the paths replaced.

    A method keeps its backbone under ``backbone`` in its params and in its method state (BN
    statistics, an EMA target such as DINO's teacher), so an encoder export initialises the
    online and the target network alike; heads and projectors keep their initialisation.
    """
    replaced = []
    targets = [encoder["params"]] + (
        [encoder["batch_stats"]] if array_shapes(encoder["batch_stats"]) else []
    )

    def visit(node, path):
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            sub = f"{path}/{key}" if path else str(key)
            match = next(
                (
                    t
                    for t in targets
                    if key == "backbone" and array_shapes(value) == array_shapes(t)
                ),
                None,
            )
            if match is None:
                out[key] = visit(value, sub)
            else:
                out[key] = jax.tree.map(
                    lambda new, old: jax.device_put(np.asarray(new), old.sharding), match, value
                )
                replaced.append(sub)
        return out

    return visit(tree, ""), replaced


def _with_export_model(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config`` with the model section of ``ckpt.init_from``'s encoder export (its
    architecture decides the arrays) and, where ``augment.mean`` / ``std`` are unset, the
    export's input normalisation (the one its weights were trained with)."""
    spec = read_spec(config.ckpt.init_from)
    config = ml_collections.ConfigDict(config.to_dict())
    config.model.update(spec["model"])
    if not config.augment.mean:
        config.augment.mean = tuple(spec["input"]["mean"])
        config.augment.std = tuple(spec["input"]["std"])
    log.info(
        "ckpt.init_from is an encoder export: model %s, input mean %s std %s",
        spec["model"],
        config.augment.mean,
        config.augment.std,
    )
    config.lock()
    return config


def _start_from_export(config, state):
    """The fresh ``state`` with its backbones (online and target) set from the encoder
    export of ``ckpt.init_from`` (``launch/import_weights.py``'s): step 0, new optimizer."""
    export = load_export(config.ckpt.init_from)
    params, done = graft_encoder(state.params, export.arrays)
    method_state, done_state = graft_encoder(state.method_state, export.arrays)
    if not any(path.endswith("backbone") for path in done):
        raise CheckpointError(
            f"ckpt.init_from={config.ckpt.init_from!r} is an encoder export of "
            f"{export.spec['model']}, and no backbone of this run has its shapes: set "
            "config.model to that model section (e.g. --config.model.backbone=...)."
        )
    origin = (
        f"initialised {', '.join(f'params/{p}' for p in done)}"
        f"{''.join(f', method_state/{p}' for p in done_state)} from the encoder export "
        f"{config.ckpt.init_from} ({export.spec['method']}, step {export.step})"
    )
    return state.replace(params=params, method_state=method_state), {"step": 0}, origin


def _changes_on_resume(config, workdir, ckpt) -> dict:
    """The config fields a resume of ``workdir`` changes (logged; in results.json). Those that
    cannot change (architecture, method, data) fail at restore or at the data check."""
    step = ckpt.latest_step()
    if step is None:
        return {}
    try:
        saved = read_config(workdir, step)
    except CheckpointError:
        return {}  # a checkpoint without its config item (written by other code)
    changed = config_lib.config_changes(saved, config.to_dict())
    if changed:
        log.warning(
            "Resuming with %d config field(s) changed from the checkpoint's: %s",
            len(changed),
            ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()),
        )
    return changed


def _check_tokenizer(now: dict, saved: dict) -> None:
    """A resumed text run must tokenise with the tokenizer its checkpoint was trained with."""
    if now["fingerprint"] != saved.get("fingerprint"):
        raise DataError(
            f"tokenizer {now['tokenizer']} has fingerprint {now['fingerprint'][:12]}... but "
            f"the checkpoint was trained with {str(saved.get('fingerprint'))[:12]}... "
            f"({saved.get('tokenizer')}): it is another run's (or a retrained) tokenizer. Put "
            "the run's own tokenizer.json back, or start a new workdir."
        )


class Step(NamedTuple):
    """What :func:`build_step` makes: the pieces of a run's train step."""

    total: int  # steps of the run
    schedule: optax.Schedule
    tx: optax.GradientTransformation
    method: Method  # with the online linear probe when an online_linear entry is active
    input_spec: dict  # the export's input (resize, normalisation)
    init_fn: Callable  # init(seed) -> TrainState, replicated over the mesh or split (fsdp)
    train_step: Callable  # train_step(state, batch, frozen=None) -> (state, metrics)


def build_step(
    config: ml_collections.ConfigDict, mesh, steps_per_epoch: int, *, num_classes: int
) -> Step:
    """The schedule, optimizer, method (with its online linear probe) and jitted init and
    train step of ``config`` over ``mesh``, as :func:`run` trains them.

    ``steps_per_epoch`` sets the schedule's length; ``num_classes`` (the train split's) sizes
    the online linear probe, when an ``online_linear`` entry of ``config.evals`` is active.
    ``ssl_jax.programs.plan`` compiles this same step ahead of time, without data.
    """
    opt = make_optimization(config, steps_per_epoch)
    method = get_method(config, total_steps=opt.total)
    input_spec = method.input_spec or make_input_spec(**eval_settings(config.augment))
    method = maybe_with_online_linear(
        method, config.evals, num_classes=num_classes, input_spec=input_spec
    )
    fns = make_train_fns(config, method, opt, mesh)
    return Step(opt.total, opt.schedule, opt.tx, method, input_spec, fns.init_fn, fns.train_step)


def run(
    config: ml_collections.ConfigDict,
    workdir: epath.PathLike,
    *,
    should_stop: Callable[[int], bool] | None = None,
    program: str = "pretrain",
) -> dict:
    """Pretrain, checkpoint, evaluate; returns (and writes) ``results.json``'s numbers.

    ``workdir`` is a local path or a URI (``gs://bucket/run``). ``should_stop(step)`` lets
    a caller interrupt the run as SIGTERM would: the state after ``step`` steps is
    checkpointed and the function returns. ``program`` names the run in the results
    (distillation's is ``distill``), beside its ``dataset``, which the export's spec records
    too.
    """
    workdir = resolve(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if config.ckpt.init_from and not config.ckpt.resume_from:
        if not _holds_state(config.ckpt.init_from):
            config = _with_export_model(config)
    batch_size = config.data.batch_size
    mesh = make_training_mesh(config, batch_size)

    source = get_source(config.data, "train", workdir=workdir)  # a text run's tokenizer there
    iterator = make_batch_iterator(source, batch_size=batch_size, seed=config.seed)
    steps_per_epoch = iterator.steps_per_epoch
    built = build_step(config, mesh, steps_per_epoch, num_classes=source.num_classes)
    total, method = built.total, built.method
    input_spec = getattr(source, "input_spec", None) or built.input_spec  # token sources
    if input_spec.get("kind") == "tokens" and input_spec["vocab_size"] > config.model.vocab_size:
        raise ValueError(
            f"the tokenizer has {input_spec['vocab_size']} tokens but model.vocab_size="
            f"{config.model.vocab_size}; set --config.model.vocab_size={input_spec['vocab_size']} "
            "or more (data.vocab_size bounds the tokenizer)."
        )
    init_fn, train_step = built.init_fn, built.train_step
    abstract_state = jax.eval_shape(init_fn, config.seed)
    # Frozen inputs (a teacher) are reloaded from their source at every start, resume included.
    frozen = None
    if method.load_frozen is not None:
        frozen = method.load_frozen(mesh, workdir=workdir, source=source)

    ckpt = make_checkpointer(config, workdir)
    state, start, origin = restore_or_start(
        ckpt, workdir, abstract_state, iterator, lambda: _start(config, init_fn, abstract_state)
    )
    changed = _changes_on_resume(config, workdir, ckpt)
    if start and input_spec.get("kind") == "tokens":
        _check_tokenizer(input_spec, read_encoder_spec(str(workdir), start)["input"])
    if hasattr(source, "image_shape"):
        unit, shape = "images", "x".join(map(str, source.image_shape))
    else:  # token records
        unit, shape = "sequences", f"{source.seq_len} tokens"
    log.info(
        "data: %s, %d %s of %s, %d classes; %s; %d steps of %d %s (%d per epoch)",
        source.name,
        len(source),
        unit,
        shape,
        source.num_classes,
        origin,
        total,
        batch_size,
        unit,
        steps_per_epoch,
    )
    truncate_after(workdir / "metrics.jsonl", start)
    writer = MetricsWriter(workdir, tensorboard=config.log.tensorboard)
    encoder_spec = make_spec(
        config.model,
        input=input_spec,
        network=method.network,
        method=method.name,
        feature_dim=method.backbone.feature_dim,
        step=start,
        head=method.head_spec(start) if method.head_spec else False,
        data=identify(config.data),
    )
    evaluators = Evaluators(
        config.evals, config.data, method.backbone, input_spec, mesh, total_steps=total
    )
    config_json = config.to_dict()

    def save(step, state, force):
        return ckpt.save(
            step,
            state=state,
            encoder=method.export(state.params, state.method_state),
            encoder_spec={**encoder_spec, "step": step, **_head_at(method, step)},
            config=config_json,
            data=iterator.get_state(step),
            force=force,
        )

    def evaluate(step, state):
        export, params = method.export(state.params, state.method_state), state.params
        if config.mesh.fsdp:  # the evaluators take whole (replicated) arrays
            export, params = replicate((export, params), mesh)
        return evaluators(step, export, params)

    loop = Loop(
        train_step=lambda state, batch: train_step(state, batch, frozen),
        batches=on_devices(iterator.iterate(start, workers=config.data.workers), mesh),
        save=save,
        total_steps=total,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        log_every=config.log.every_steps,
        evaluates=lambda step: bool(evaluators.due(step)),
        evaluate=evaluate,
        diagnose=method.diagnose,
        progress=config.log.progress,
        desc="pretrain",
    )
    results = {
        "program": program,
        "dataset": encoder_spec["data"],
        "start_step": start,
        "total_steps": total,
        "steps_per_epoch": steps_per_epoch,
    }
    if changed:
        results["changed_on_resume"] = changed
    try:
        state, loop_results = train(
            loop, state, start, ckpt=ckpt, writer=writer, workdir=workdir, should_stop=should_stop
        )
    finally:
        ckpt.close()
        writer.close()
    results.update(loop_results)
    results["train_step_compilations"] = train_step.compilations()
    if method.visualize is not None and "interrupted_at" not in results:
        results["reconstructions"] = draw_reconstructions(config, method, state, workdir)
    write_results(workdir, results)
    return results


ROWS = ("original", "input", "output")  # the usual rows of Method.visualize, top to bottom


def draw_reconstructions(config, method, state, workdir: epath.PathLike, *, count: int = 8) -> str:
    """``WORKDIR/reconstructions.png``: the method's pictures (``Method.visualize``) of the
    first ``count`` test images, drawn by process 0; returns the path."""
    path = epath.Path(workdir) / "reconstructions.png"
    if jax.process_index() != 0:
        return str(path)
    source = get_source(config.data, "test")
    images, _ = source.get(np.arange(min(count, len(source))))
    visualize = jax.jit(method.visualize)
    rows = visualize(state.params, state.method_state, images, jax.random.key(config.seed))
    rows = jax.device_get(rows)  # a dict pytree comes back with sorted keys: reorder
    order = [k for k in ROWS if k in rows] + sorted(set(rows) - set(ROWS))
    rows = {k: rows[k] for k in order}
    step = int(jax.device_get(state.step))
    return plot_image_rows(rows, path, f"{method.name}, step {step}")
