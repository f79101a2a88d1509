"""k-means clustering of the frozen encoder's features (ssl_jax/programs/cluster.py).

  python launch/cluster.py --config configs/cluster.py \
    --config.pretrained=runs/simclr_cifar10 --workdir runs/simclr_cifar10/cluster

The L2-normalised features of the test split (cluster.split: test | train | both) are
clustered by k-means (k-means++ seeds, 10 restarts seeded by config.seed, the lowest
inertia kept) into k clusters (-1: the number of classes), with no label, and scored against
the labels: acc (accuracy after Hungarian matching), nmi, ari, all in %, and the inertia.
The data defaults to the dataset the export records; set --config.data.name etc. for another
dataset. Baselines: --config.random_init=True, --config.raw_pixels=True. Variant :runlocal:
2 restarts.
"""

import ml_collections

from ssl_jax.config import probe_defaults
from ssl_jax.evaluators.registry import DEFAULTS, SMALL_RUN


def get_config(arg=None):
    c = probe_defaults()
    c.raw_pixels = False  # the baseline of the encoder's input pixels, flattened
    # The evaluator's fields (ssl_jax.evaluators.registry.DEFAULTS): split (test | train |
    # both, concatenated), k (clusters; -1: the number of classes), restarts, iterations
    # (Lloyd iterations per restart at most; stops when stable).
    fields = {k: v for k, v in DEFAULTS["cluster"].items() if k not in ("seed", "batch_size")}
    if arg == "runlocal":
        fields.update(SMALL_RUN["cluster"])
    c.cluster = ml_collections.ConfigDict(fields)
    if arg not in (None, "runlocal"):
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c.lock()
    return c
