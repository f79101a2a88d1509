"""The one metrics writer of a program (JSON lines, optional TensorBoard, console), and
:func:`topk_accuracy`, the classification metric every probe reports.

Paths may be URIs (``gs://bucket/run``, :mod:`ssl_jax.paths`).
"""

import json
import math

import jax
import numpy as np
from etils import epath

from ssl_jax.paths import is_remote


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

    Object stores cannot append (gcsfs silently overwrites in mode ``"a"``): on a remote
    ``WORKDIR`` the whole file is rewritten at each row instead.

    With ``tensorboard=True`` the same scalars also go to TensorBoard event files under
    ``WORKDIR/tensorboard`` (needs ``tensorboardX``; a local ``WORKDIR`` only).
    """

    def __init__(
        self, workdir: epath.PathLike, *, tensorboard: bool = False, filename="metrics.jsonl"
    ):
        if tensorboard and is_remote(workdir):
            raise ValueError(
                f"log.tensorboard=True writes event files to a local workdir only, but the "
                f"workdir is {workdir}. Set --config.log.tensorboard=False (metrics.jsonl has "
                "the same scalars) or use a local workdir."
            )
        workdir = epath.Path(workdir)
        self.active = jax.process_index() == 0
        self.path = workdir / filename
        self._tb = None
        self._text = None  # a remote file's content, rewritten whole at each row
        if not self.active:
            return
        workdir.mkdir(parents=True, exist_ok=True)
        if is_remote(workdir):
            self._text = self.path.read_text() if self.path.exists() else ""
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, metrics: dict) -> dict:
        """Write one row; returns it as plain Python values."""
        row = {"step": int(step), **{k: _to_python(v) for k, v in metrics.items()}}
        if not self.active:
            return row
        line = json.dumps(row) + "\n"
        if self._text is None:
            with self.path.open("a") as f:
                f.write(line)
        else:
            self._text += line
            self.path.write_text(self._text)
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, int | float):
                    self._tb.add_scalar(k, v, global_step=step)
        return row

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: epath.PathLike) -> list[dict]:
    """The rows of a ``metrics.jsonl`` file."""
    lines = epath.Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def truncate_after(path: epath.PathLike, step: int) -> None:
    """Drop rows logged after ``step`` (a resumed run re-logs them), keeping the file valid."""
    path = epath.Path(path)
    if not path.exists() or jax.process_index() != 0:
        return
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if row.get("step", 0) <= step:
            rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_results(workdir: epath.PathLike, results: dict) -> str:
    """A program's final numbers as ``WORKDIR/results.json``; returns its path."""
    path = epath.Path(workdir) / "results.json"
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({k: _to_python(v) for k, v in results.items()}, indent=2)
        path.write_text(text + "\n")
    return str(path)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict:
    """``{"top{k}": %}``: the percentage of rows of ``logits`` ``(N, C)`` whose int ``labels``
    ``(N,)`` is among their ``k`` largest; ties rank the lower class index first."""
    ranked = np.argsort(-logits, axis=1, kind="stable")
    return {
        f"top{k}": 100.0 * float(np.mean(np.any(ranked[:, :k] == labels[:, None], axis=1)))
        for k in ks
    }
