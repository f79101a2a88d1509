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


def get_config(arg=None):
    c = probe_defaults()
    c.raw_pixels = False  # the baseline of the encoder's input pixels, flattened
    c.few_shot = ml_collections.ConfigDict(
        dict(
            ways=(5, -1),  # -1: every class (all-way)
            shots=(1, 5, 10, 25),
            queries=15,  # per class and episode, clipped to what the class has
            query_split="test",  # test | train (disjoint from each episode's support)
            episodes=600,
            classifiers=("proto", "logreg"),
            logreg_c=1.0,  # scikit-learn's C: sum of cross-entropies + ||W||^2 / (2 C)
            logreg_tol=1e-4,  # Nesterov steps until the convergence bound is below this
        )
    )
    if arg == "runlocal":
        c.few_shot.episodes = 50
    elif arg is not None:
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c.lock()
    return c
