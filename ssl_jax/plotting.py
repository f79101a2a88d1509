"""Plot ``metrics.jsonl`` curves to PNG: ``python -m ssl_jax.plotting WORKDIR [KEY ...]``."""

import os
import sys

from ssl_jax.metrics import read_metrics


def plot_metrics(workdir: str, keys=("loss",), out: str | None = None) -> str:
    """One panel per key against step; returns the PNG path (default WORKDIR/<keys>.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist; is {workdir} a pretraining workdir?")
    rows = read_metrics(path)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
        if not points:
            ax.set_title(f"{key}: not logged")
            continue
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, marker="." if len(points) < 50 else None)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    fig.suptitle(os.path.basename(os.path.normpath(workdir)))
    fig.tight_layout()
    out = out or os.path.join(workdir, "_".join(keys) + ".png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_image_rows(rows: dict, path: str, title: str = "") -> str:
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m ssl_jax.plotting WORKDIR [KEY ...]")
    print(plot_metrics(sys.argv[1], tuple(sys.argv[2:]) or ("loss",)))
