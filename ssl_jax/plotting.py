"""Plot ``metrics.jsonl`` curves to PNG: ``python -m ssl_jax.plotting WORKDIR [KEY ...]``.

Workdirs and outputs may be URIs (``gs://bucket/run``, :mod:`ssl_jax.paths`).
"""

import io
import sys

from etils import epath

from ssl_jax.metrics import read_metrics
from ssl_jax.paths import resolve


def save_figure(fig, path: epath.PathLike) -> str:
    """Write ``fig`` to ``path`` (its format from the suffix, else PNG) at 100 dpi through
    epath, and close it; returns ``str(path)``."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format=epath.Path(path).suffix[1:] or None, dpi=100)
    plt.close(fig)
    epath.Path(path).write_bytes(buffer.getvalue())
    return str(path)


def plot_metrics(workdir: epath.PathLike, keys=("loss",), out: epath.PathLike | None = None) -> str:
    """One panel per key against step; returns the PNG path (default WORKDIR/<keys>.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workdir = epath.Path(workdir)
    path = workdir / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; is {workdir} a pretraining workdir?")
    rows = read_metrics(path)
    logged = sorted(
        {k for r in rows for k, v in r.items() if isinstance(v, int | float)} - {"step"}
    )
    unknown = [key for key in keys if key not in logged]
    if unknown:
        raise ValueError(f"{path} has no column(s) {unknown}; the logged columns are {logged}.")
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, marker="." if len(points) < 50 else None)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    fig.suptitle(resolve(workdir).name)
    fig.tight_layout()
    return save_figure(fig, out or workdir / ("_".join(keys) + ".png"))


def plot_image_rows(rows: dict, path: epath.PathLike, title: str = "") -> str:
    """A grid of pictures: one row per entry of ``rows`` (``{name: (N, H, W, 3) floats in
    [0, 1]}``, the same N images in each), labelled with its name; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(rows)
    count = len(next(iter(rows.values())))
    fig, axes = plt.subplots(
        len(names), count, figsize=(1.2 * count + 0.8, 1.25 * len(names)), squeeze=False
    )
    for r, name in enumerate(names):
        images = np.clip(np.asarray(rows[name], np.float32), 0.0, 1.0)
        for c in range(count):
            ax = axes[r][c]
            ax.imshow(images[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


USAGE = (
    "usage: python -m ssl_jax.plotting WORKDIR [KEY ...]\n"
    "  Plots the metrics.jsonl columns KEY (default: loss) of a run against the step, into\n"
    "  WORKDIR/<KEY_...>.png, and prints the path."
)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(USAGE)
        return 0 if len(argv) >= 2 else 2
    try:
        print(plot_metrics(argv[1], tuple(argv[2:]) or ("loss",)))
    except (FileNotFoundError, ValueError) as e:
        print(f"plotting: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
