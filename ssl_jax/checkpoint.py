"""Orbax checkpoints: the only module that imports Orbax.

A run directory holds ``checkpoints/<step>/`` with five items:

- ``state``: the full :class:`~ssl_jax.train_step.TrainState` (resume);
- ``encoder``: the encoder export's arrays ``{"params", "batch_stats"}`` that downstream
  programs restore without touching optimizer state;
- ``encoder_spec``: what the export is, as JSON (architecture, expected input, network,
  method, feature dim, step; see :func:`ssl_jax.export.make_spec`);
- ``config``: the run's config as JSON;
- ``data``: the data iterator state as JSON.

Orbax writes each save to a temporary directory and renames it when complete, so a
run killed mid-save leaves the earlier checkpoints intact. Before restoring, the saved
array shapes (Orbax metadata, read without loading arrays) are compared with the target
tree, so restoring into another architecture names the first differing path.

Run directories may be URIs (``gs://bucket/run``): see :mod:`ssl_jax.paths`.
"""

import contextlib
import json
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

from ssl_jax.metrics import read_metrics
from ssl_jax.paths import resolve

CHECKPOINT_DIR = "checkpoints"
ITEMS = ("state", "encoder", "encoder_spec", "config", "data")
BEST_DIR = "best"  # BestCheckpoint's run directory inside the workdir


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match the model."""


class NoSpaceError(CheckpointError):
    """A checkpoint could not be written: the filesystem of the run directory is full."""


TEMPORARY_SUFFIX = ".orbax-checkpoint-tmp"  # Orbax's in-progress step directories
_NO_SPACE = ("No space left on device", "os_error_code='28'", "[Errno 28]", "ENOSPC")


def is_no_space(error: BaseException) -> bool:
    """Whether ``error`` (or an exception it was raised from) is a full filesystem."""
    while error is not None:
        if isinstance(error, OSError) and error.errno == 28:
            return True
        if any(text in str(error) for text in _NO_SPACE):
            return True
        error = error.__cause__ or error.__context__
    return False


def checkpoint_dir(run_dir: epath.PathLike) -> epath.Path:
    return resolve(run_dir) / CHECKPOINT_DIR


class Checkpointer:
    """Saves every ``every_steps`` steps (and when forced), keeps the newest ``keep``.

    ``read_only=True`` opens another run's checkpoints for restoring and guarantees that
    nothing in that directory is written or deleted.
    """

    def __init__(
        self,
        run_dir: epath.PathLike,
        *,
        every_steps: int = 1,
        keep: int = 1,
        async_save: bool = True,
        read_only: bool = False,
    ):
        if every_steps <= 0:
            raise ValueError(f"ckpt.every_steps must be positive, got {every_steps}.")
        if keep <= 0:
            raise ValueError(f"ckpt.keep must be positive, got {keep}.")
        self.every_steps = every_steps
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=policies.AnySavePolicy(
                [
                    policies.FixedIntervalPolicy(every_steps),
                    policies.PreemptionCheckpointingPolicy(),
                ]
            ),
            preservation_policy=policies.LatestN(keep),
            enable_async_checkpointing=async_save,
            create=not read_only,
            read_only=read_only,
        )
        self._manager = ocp.CheckpointManager(
            checkpoint_dir(run_dir), item_names=ITEMS, options=options
        )

    def due(self, step: int) -> bool:
        """Whether the interval policy saves ``step`` (the training loop checks such a step's
        loss before saving it; preemption and the last step are forced saves)."""
        return step % self.every_steps == 0

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(
        self,
        step: int,
        *,
        state,
        encoder,
        encoder_spec: dict,
        config: dict,
        data: dict,
        force: bool = False,
    ) -> bool:
        """Save all five items at ``step``; returns whether a save was started.

        A full filesystem (now, or in the asynchronous write of an earlier save that this one
        waits for) raises :class:`NoSpaceError`, one line naming the directory, after the
        partial step directories are removed; the complete checkpoints stay as they were."""
        with self._writing():
            return self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    encoder=ocp.args.StandardSave(encoder),
                    encoder_spec=ocp.args.JsonSave(encoder_spec),
                    config=ocp.args.JsonSave(config),
                    data=ocp.args.JsonSave(data),
                ),
                force=force,
            )

    @contextlib.contextmanager
    def _writing(self):
        try:
            yield
        except Exception as e:
            if not is_no_space(e):
                raise
            raise self._no_space() from None

    def _no_space(self) -> NoSpaceError:
        directory = self._manager.directory
        removed = self._remove_partial()
        latest = self._manager.latest_step()
        kept = (
            f"checkpoint step {latest} is intact"
            if latest is not None
            else "no complete checkpoint was written yet"
        )
        partial = f" (removed the partial {removed})" if removed else ""
        return NoSpaceError(
            f"no space left on device writing a checkpoint to {directory}{partial}: {kept}; "
            "free space there, or lower ckpt.keep, and rerun the same command to resume."
        )

    def _remove_partial(self) -> str:
        """Delete Orbax's temporary step directories (this process is not writing one: its
        save failed), so that a full disk leaves only complete checkpoints; what was
        removed, as text."""
        if jax.process_index() != 0:
            return ""
        removed = []
        for path in self._manager.directory.glob(f"*{TEMPORARY_SUFFIX}"):
            path.rmtree(missing_ok=True)
            removed.append(path.name.removesuffix(TEMPORARY_SUFFIX))
        return ", ".join(f"step {name}" for name in sorted(removed))

    def restore(self, step: int, abstract_state, *, partial: bool = False) -> tuple[Any, dict]:
        """The full training state (into ``abstract_state``'s structure and shardings).

        ``partial=True``: only the fields of the saved state that ``abstract_state`` (a dict
        such as ``{"params": ..., "method_state": ...}``) names; the others (an optimizer
        state of another optimizer) are not read.
        """
        if partial:
            state_args = ocp.args.PyTreeRestore(
                item=abstract_state,
                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state),
                partial_restore=True,
            )
            hint = "ckpt.init_from needs a source run with the same model and method."
        else:
            state_args = ocp.args.StandardRestore(abstract_state)
            hint = (
                "If the config changed (model, method, optimizer), start a new workdir or "
                "use ckpt.init_from."
            )
        if abstract_state is not None:
            difference = first_difference(
                _array_metadata(self._manager.directory / str(step) / "state"),
                abstract_state,
                partial,
            )
            if difference:
                raise CheckpointError(
                    f"The training state of step {step} in {self._manager.directory} does not "
                    f"match this run's: it differs at {difference}. {hint}"
                )
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=state_args, data=ocp.args.JsonRestore())
            )
        except Exception as e:  # Orbax raises several types for bad/mismatched trees.
            raise CheckpointError(
                f"Could not restore the training state of step {step} from "
                f"{self._manager.directory}: {type(e).__name__}: {e}. {hint}"
            ) from e
        return restored.state, restored.data

    def wait(self) -> None:
        """Block until an asynchronous save has been written (:class:`NoSpaceError` if the
        filesystem filled up)."""
        with self._writing():
            self._manager.wait_until_finished()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._manager.close()


def _steps(run_dir: epath.PathLike) -> list[int]:
    directory = checkpoint_dir(run_dir)
    if not directory.is_dir():
        return []
    return sorted(ocp.utils.checkpoint_steps(directory))


def resolve_step(run_dir: epath.PathLike, step: int | None = None) -> int:
    """``step`` if it exists in ``run_dir``, else the newest; a clear error if none."""
    steps = _steps(run_dir)
    if not steps:
        raise CheckpointError(
            f"No checkpoint found under {checkpoint_dir(run_dir)}. Pass the workdir of a "
            "finished or running pretraining run (config.pretrained=DIR)."
        )
    if step is None:
        return steps[-1]
    if step not in steps:
        raise CheckpointError(f"Step {step} is not in {checkpoint_dir(run_dir)}; found {steps}.")
    return step


def _read_json_item(run_dir: epath.PathLike, step: int, item: str, what: str) -> dict | None:
    """The JSON item ``item`` of ``step``, or None when the checkpoint has no such item."""
    path = checkpoint_dir(run_dir) / str(step) / item / "metadata"
    if not path.parent.is_dir():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"Cannot read the {what} {path}: {e}") from e


def read_config(run_dir: epath.PathLike, step: int | None = None) -> dict:
    """The config a checkpoint was written with, as a plain dict."""
    step = resolve_step(run_dir, step)
    config = _read_json_item(run_dir, step, "config", "run config")
    if config is None:
        path = checkpoint_dir(run_dir) / str(step) / "config"
        raise CheckpointError(f"Cannot read the run config {path}: the item is missing.")
    return config


def read_encoder_spec(run_dir: epath.PathLike, step: int) -> dict | None:
    """The ``encoder_spec`` item of ``step``; None when the checkpoint has none."""
    return _read_json_item(run_dir, step, "encoder_spec", "encoder spec")


def restore_encoder(run_dir: epath.PathLike, abstract_encoder, step: int | None = None):
    """Only the encoder export of ``run_dir`` (newest step unless given): ``(tree, step)``.

    The saved shapes are checked against ``abstract_encoder`` first: a mismatch raises a
    :class:`CheckpointError` naming the first differing path and both shapes.
    """
    step = resolve_step(run_dir, step)
    directory = checkpoint_dir(run_dir) / str(step) / "encoder"
    hint = "Does the checkpoint come from a run with the same model config?"
    difference = first_difference(_array_metadata(directory), abstract_encoder)
    if difference:
        raise CheckpointError(
            f"The encoder export {directory} does not match the model: it differs at "
            f"{difference}. {hint}"
        )
    try:
        tree = ocp.StandardCheckpointer().restore(directory, abstract_encoder)
    except Exception as e:
        raise CheckpointError(
            f"Could not restore the encoder export {directory}: {type(e).__name__}: {e}. {hint}"
        ) from e
    return tree, step


def save_export(run_dir: epath.PathLike, step: int, *, encoder, encoder_spec: dict) -> None:
    """A run directory holding only an encoder export at ``step`` (items ``encoder`` and
    ``encoder_spec``, as a pretraining checkpoint's): what weight importers write, which
    :func:`ssl_jax.export.load_export` and ``ckpt.init_from`` read."""
    manager = ocp.CheckpointManager(
        checkpoint_dir(run_dir),
        item_names=("encoder", "encoder_spec"),
        options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False, create=True),
    )
    try:
        manager.save(
            step,
            args=ocp.args.Composite(
                encoder=ocp.args.StandardSave(encoder),
                encoder_spec=ocp.args.JsonSave(encoder_spec),
            ),
            force=True,
        )
        manager.wait_until_finished()
    finally:
        manager.close()


def has_state(run_dir: epath.PathLike, step: int) -> bool:
    """Whether checkpoint ``step`` of ``run_dir`` holds a training state (an imported export
    has only the encoder)."""
    return (checkpoint_dir(run_dir) / str(step) / "state").is_dir()


def _array_metadata(directory: epath.PathLike):
    """The saved array metadata tree of an item directory (no arrays are read), or None
    where Orbax cannot read it: the restore then reports the damage."""
    try:
        return ocp.StandardCheckpointHandler().metadata(epath.Path(directory))
    except Exception:
        return None


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _shapes(tree) -> list[tuple[str, tuple]]:
    """``(path, shape)`` of every array leaf, in flattening order; paths as ``a/b/0/c``.

    Saved trees name fields by dict keys, live ones by attributes (dataclasses, named tuples,
    ``nnx.Variable.value``) or int keys: both become the same strings. A trailing ``value``
    (an ``nnx.Variable``'s) is dropped.
    """
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shape = getattr(leaf, "shape", None)
        if shape is None:
            continue
        names = [_key_name(k) for k in path]
        if len(names) > 1 and names[-1] == "value":
            names = names[:-1]
        out.append(("/".join(names), tuple(shape)))
    return out


def array_shapes(tree) -> list[tuple[str, tuple]]:
    """``(path, shape)`` of every array leaf of ``tree``, paths as ``a/b/0/c`` (saved and live
    trees give the same strings; see :func:`first_difference`)."""
    return _shapes(tree)


def first_difference(saved, abstract, partial: bool = False) -> str | None:
    """Where the ``saved`` metadata tree and the ``abstract`` target differ, or None.

    ``"<path>: checkpoint (3, 3, 8, 16), model (3, 3, 4, 8)"`` for the first array (in the
    target's order, ``params`` first) whose shape differs or that only one side has.
    ``partial=True``: arrays the target does not name are not compared. ``saved=None`` (no
    metadata) compares nothing.
    """
    if saved is None:
        return None
    saved_shapes = dict(_shapes(saved))
    model = sorted(_shapes(abstract), key=lambda item: not item[0].startswith("params/"))
    for path, shape in model:
        if path not in saved_shapes:
            return f"{path}: not in the checkpoint, model {shape}"
        if saved_shapes[path] != shape:
            return f"{path}: checkpoint {saved_shapes[path]}, model {shape}"
    if not partial:
        named = {path for path, _ in model}
        for path, shape in saved_shapes.items():
            if path not in named:
                return f"{path}: checkpoint {shape}, not in the model"
    return None


class BestCheckpoint:
    """The state with the best validation top-1 so far, kept in ``WORKDIR/best`` (one step).

    On a resumed run the best so far is read from the ``val_top1`` rows of ``metrics.jsonl``
    up to the resumed step; a best checkpoint saved after that step (the run stopped between
    it and the next regular checkpoint) is dropped: the resumed run, continuing the same
    trajectory, writes it again.
    """

    def __init__(self, workdir: epath.PathLike, start: int, *, async_save: bool):
        self.dir = epath.Path(workdir) / BEST_DIR
        if jax.process_index() == 0:
            _drop_steps_after(checkpoint_dir(self.dir), start)
        self.ckpt = Checkpointer(self.dir, keep=1, async_save=async_save)
        self.step, self.top1 = None, -np.inf
        path = epath.Path(workdir) / "metrics.jsonl"
        rows = read_metrics(path) if path.exists() else []
        for row in rows:
            if row["step"] <= start and "val_top1" in row and row["val_top1"] > self.top1:
                self.step, self.top1 = row["step"], row["val_top1"]

    def update(self, step: int, top1: float, save: Callable[[Checkpointer], object]) -> bool:
        """Save (with ``save(checkpointer)``) when ``top1`` beats the best so far."""
        if top1 <= self.top1:
            return False
        self.step, self.top1 = step, top1
        save(self.ckpt)
        return True

    def restore(self, abstract: dict) -> dict:
        """The arrays of the best step, restored into ``abstract``'s structure."""
        self.ckpt.wait()
        saved = self.ckpt.latest_step()
        if saved != self.step:
            raise CheckpointError(
                f"The best validation step is {self.step} (metrics.jsonl), but {self.dir} "
                f"holds step {saved}. Was the workdir edited? Rerun in a new workdir."
            )
        arrays, _ = self.ckpt.restore(saved, abstract)
        return arrays

    def close(self) -> None:
        self.ckpt.close()


def _drop_steps_after(directory: epath.Path, step: int) -> None:
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if child.name.isdigit() and int(child.name) > step:
            child.rmtree()
