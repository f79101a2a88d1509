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


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m ssl_jax.plotting WORKDIR [KEY ...]")
    print(plot_metrics(sys.argv[1], tuple(sys.argv[2:]) or ("loss",)))
