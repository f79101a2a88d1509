"""Few-shot episodes on the frozen encoder of a pretraining run (ssl_jax/programs/few_shot.py).

  python launch/few_shot.py --config configs/few_shot.py \
    --config.pretrained=runs/simclr_cifar10 --workdir runs/simclr_cifar10/few_shot

5-way and all-way (ways=-1) episodes with 1, 5, 10 and 25 shots: support images from the
train split, 15 queries per class from the test split (fewer if a class has fewer), 600
seeded episodes (config.seed) per setting; prototypes (Snell et al. 2017, cosine) and
logistic regression (Tian et al. 2020: scikit-learn's C=1 objective on L2-normalised
features, solved to logreg_tol) on L2-normalised features. Results: mean accuracy (%) and
its 95% confidence interval per classifier and setting, e.g. logreg_5way_1shot and
logreg_5way_1shot_ci95. The data defaults to the dataset the export records; set
--config.data.name etc. for another dataset. Baselines: --config.random_init=True,
--config.raw_pixels=True. Variant :runlocal: 50 episodes.
"""

import ml_collections

from ssl_jax.config import probe_defaults
from ssl_jax.evaluators.registry import DEFAULTS, SMALL_RUN


def get_config(arg=None):
    c = probe_defaults()
    c.raw_pixels = False  # the baseline of the encoder's input pixels, flattened
    # The evaluator's fields (ssl_jax.evaluators.registry.DEFAULTS): ways (-1: all-way), shots,
    # queries per class (clipped to what a class has), query_split (test | train, disjoint from
    # each episode's support), episodes, classifiers, logreg_c (scikit-learn's C), logreg_tol.
    fields = {k: v for k, v in DEFAULTS["few_shot"].items() if k not in ("seed", "batch_size")}
    if arg == "runlocal":
        fields.update(SMALL_RUN["few_shot"])
    c.few_shot = ml_collections.ConfigDict(fields)
    if arg not in (None, "runlocal"):
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c.lock()
    return c
