"""Weighted kNN (k=20 and 200, T=0.07, cosine) on the frozen encoder of a pretraining run.

  python launch/knn.py --config configs/knn.py --config.pretrained=runs/simclr_cifar10 \
    --workdir runs/simclr_cifar10/knn
"""

import ml_collections

from ssl_jax.config import probe_defaults
from ssl_jax.evaluators.registry import DEFAULTS


def get_config(arg=None):
    c = probe_defaults()
    c.knn = ml_collections.ConfigDict(  # the evaluator's k and temperature
        {k: v for k, v in DEFAULTS["knn"].items() if k != "batch_size"}
    )
    if arg not in (None, "runlocal"):
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c.lock()
    return c
