"""Quickstart: SimCLR on the embedded digits, then a linear probe of SSL vs random features.

  python launch/quickstart.py --workdir runs/quickstart

Pretrains configs/simclr_digits.py (no download), writes an Orbax checkpoint and a loss
curve (WORKDIR/pretrain/loss.png), then probes the frozen encoder and a randomly
initialised one of the same architecture on the test split. Extra --config.key=value
flags apply to the pretraining config.
"""

import json
import os

from absl import app, flags
from ml_collections import config_flags

from ssl_jax.plotting import plot_metrics
from ssl_jax.programs import cli, linear_probe, pretrain

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/simclr_digits.py", "Pretraining config."
)
_PROBE = config_flags.DEFINE_config_file(
    "probe_config", "configs/linear_probe.py", "Linear-probe config."
)
_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Output directory.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.start()
    run_dir = os.path.join(_WORKDIR.value, "pretrain")
    pretrain.run(_CONFIG.value, run_dir)
    curve = plot_metrics(run_dir, ("loss", "learning_rate"))
    results = {}
    for name, random_init in (("ssl", False), ("random_init", True)):
        probe = _PROBE.value
        probe.unlock()
        probe.pretrained = run_dir
        probe.random_init = random_init
        probe.lock()
        results[name] = linear_probe.run(probe, os.path.join(_WORKDIR.value, f"probe_{name}"))
    summary = {
        "ssl_top1": results["ssl"]["top1"],
        "random_init_top1": results["random_init"]["top1"],
        "checkpoint": os.path.abspath(os.path.join(run_dir, "checkpoints")),
        "loss_curve": os.path.abspath(curve),
    }
    with open(os.path.join(_WORKDIR.value, "results.json"), "w") as f:
        json.dump({**summary, "probes": results}, f, indent=2)
    protocol = results["ssl"]["protocol"]
    print(f"\nLinear probe ({protocol} protocol) on the digits test split (360 images):")
    print(f"  SimCLR encoder       top-1 {summary['ssl_top1']:6.2f}%")
    print(f"  random-init encoder  top-1 {summary['random_init_top1']:6.2f}%")
    print(f"Checkpoint: {summary['checkpoint']}\nLoss curve: {summary['loss_curve']}")


if __name__ == "__main__":
    cli.run_app(main)
