"""Linear probe on the frozen encoder of a pretraining run.

  python launch/linear_probe.py --config configs/linear_probe.py \
    --config.pretrained=runs/simclr_cifar10 --workdir runs/simclr_cifar10/probe

The data section defaults to the pretraining run's; set --config.data.name etc. to probe
on another dataset. --config.random_init=True probes a random encoder of the same
architecture (the baseline).
"""

import ml_collections

from ssl_jax.config import probe_defaults


def get_config(arg=None):
    c = probe_defaults()
    c.probe = ml_collections.ConfigDict(
        dict(epochs=100, batch_size=256, learning_rate=1e-3, weight_decay=1e-4)
    )
    if arg == "runlocal":
        c.probe.epochs = 10
    elif arg is not None:
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c.lock()
    return c
