"""The one metrics writer of a program: JSON lines, optional TensorBoard, console."""

import json
import math
import os

import jax
import numpy as np


def _scalar(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


def _to_python(value):
    value = np.asarray(jax.device_get(value))
    if value.ndim == 0:
        return _scalar(value.item())
    return jax.tree.map(_scalar, value.tolist())


class MetricsWriter:
    """Appends ``{"step": s, **metrics}`` to ``WORKDIR/metrics.jsonl`` (process 0 only).

    With ``tensorboard=True`` the same scalars also go to TensorBoard event files under
    ``WORKDIR/tensorboard`` (needs ``tensorboardX``).
    """

    def __init__(self, workdir: str, *, tensorboard: bool = False, filename="metrics.jsonl"):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, filename)
        self._tb = None
        if not self.active:
            return
        os.makedirs(workdir, exist_ok=True)
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: dict) -> dict:
        """Write one row; returns it as plain Python values."""
        row = {"step": int(step), **{k: _to_python(v) for k, v in metrics.items()}}
        if not self.active:
            return row
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, int | float):
                    self._tb.add_scalar(k, v, global_step=step)
        return row

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str) -> list[dict]:
    """The rows of a ``metrics.jsonl`` file."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_after(path: str, step: int) -> None:
    """Drop rows logged after ``step`` (a resumed run re-logs them), keeping the file valid."""
    if not os.path.exists(path) or jax.process_index() != 0:
        return
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if row.get("step", 0) <= step:
                rows.append(row)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def write_results(workdir: str, results: dict) -> str:
    """A program's final numbers as ``WORKDIR/results.json``."""
    path = os.path.join(workdir, "results.json")
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(path, "w") as f:
            json.dump({k: _to_python(v) for k, v in results.items()}, f, indent=2)
            f.write("\n")
    return path
