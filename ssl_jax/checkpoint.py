"""Orbax checkpoints: the only module that imports Orbax.

A run directory holds ``checkpoints/<step>/`` with four items:

- ``state``: the full :class:`~ssl_jax.train_step.TrainState` (resume);
- ``encoder``: the encoder export ``{"params", "batch_stats"}`` that downstream
  programs restore without touching optimizer state;
- ``config``: the run's config as JSON (the downstream programs rebuild the backbone
  from its ``model`` section);
- ``data``: the data iterator state as JSON.

Orbax writes each save to a temporary directory and renames it when complete, so a
run killed mid-save leaves the earlier checkpoints intact.
"""

import json
import os
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

CHECKPOINT_DIR = "checkpoints"
ITEMS = ("state", "encoder", "config", "data")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match the model."""


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(os.path.abspath(run_dir), CHECKPOINT_DIR)


class Checkpointer:
    """Saves every ``every_steps`` steps (and when forced), keeps the newest ``keep``.

    ``read_only=True`` opens another run's checkpoints for restoring and guarantees that
    nothing in that directory is written or deleted.
    """

    def __init__(
        self,
        run_dir: str,
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

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def should_save(self, step: int) -> bool:
        return self._manager.should_save(step)

    def save(self, step: int, *, state, encoder, config: dict, data: dict, force=False) -> bool:
        """Save all four items at ``step``; returns whether a save was started."""
        return self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                encoder=ocp.args.StandardSave(encoder),
                config=ocp.args.JsonSave(config),
                data=ocp.args.JsonSave(data),
            ),
            force=force,
        )

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
        """Block until an asynchronous save has been written."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def _steps(run_dir: str) -> list[int]:
    directory = checkpoint_dir(run_dir)
    if not os.path.isdir(directory):
        return []
    return sorted(ocp.utils.checkpoint_steps(directory))


def resolve_step(run_dir: str, step: int | None = None) -> int:
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


def read_config(run_dir: str, step: int | None = None) -> dict:
    """The config a checkpoint was written with, as a plain dict."""
    step = resolve_step(run_dir, step)
    path = os.path.join(checkpoint_dir(run_dir), str(step), "config", "metadata")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"Cannot read the run config {path}: {e}") from e


def restore_encoder(run_dir: str, abstract_encoder, step: int | None = None):
    """Only the encoder export of ``run_dir`` (newest step unless given): ``(tree, step)``."""
    step = resolve_step(run_dir, step)
    directory = os.path.join(checkpoint_dir(run_dir), str(step), "encoder")
    try:
        tree = ocp.StandardCheckpointer().restore(directory, abstract_encoder)
    except Exception as e:
        raise CheckpointError(
            f"Could not restore the encoder export {directory}: {type(e).__name__}: {e}. "
            "Does the checkpoint come from a run with the same model config?"
        ) from e
    return tree, step
