"""Linear probe on the frozen encoder of a pretraining run (ssl_jax/programs/linear_probe.py).

  python launch/linear_probe.py --config configs/linear_probe.py \
    --config.pretrained=runs/simclr_cifar10 --workdir runs/simclr_cifar10/probe

Protocols (--config.probe.protocol=...):
  offline (default)  L-BFGS logistic regression on frozen features, L2 strength chosen from
                     probe.l2_grid on a data.val_fraction validation split of train, refit
                     on all of train (Kornblith et al. 2019; SimCLR appendix B.8).
  augmented          SGD (Nesterov momentum, cosine lr) of a linear head on random resized
                     crop + flip views through the frozen encoder (SimCLR B.6, MoCo, BYOL,
                     MAE's BatchNorm head); probe.epochs etc. default to 90 epochs of 256,
                     lr 0.1, no weight decay.

The data defaults to the dataset the export records; set --config.data.name etc. to probe on
another dataset. --config.data.label_fraction=0.01 trains on a class-balanced 1% of the
training labels. Baselines: --config.random_init=True (a random encoder of the same
architecture), --config.raw_pixels=True (the encoder's preprocessed input, flattened).
Variant :runlocal: 10 epochs for the augmented protocol.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from ssl_jax.config import probe_defaults

# L2 strengths of the offline protocol's objective mean CE + l2 / 2 ||W||^2 (scikit-learn's
# C = 1 / (l2 * num_train)): one per decade, 1e-6 (nearly none) to 1e3 (class-mean-like).
L2_GRID = tuple(10.0**e for e in range(-6, 4))


def get_config(arg=None):
    c = probe_defaults()
    c.raw_pixels = False  # the baseline of the encoder's input pixels, flattened
    c.data.label_fraction = 1.0  # class-balanced fraction of the training labels, in (0, 1]
    c.data.val_fraction = 0.2  # of the (labelled) training split, for the offline L2 choice
    c.probe = ml_collections.ConfigDict(
        dict(
            protocol="offline",  # offline | augmented
            # offline
            l2_grid=L2_GRID,
            max_iter=1000,  # L-BFGS iterations per fit
            tol=1e-5,  # ... or until the objective's gradient norm is below this
            # augmented; None: the protocol's default (docstring)
            epochs=placeholder(int),
            batch_size=placeholder(int),
            learning_rate=placeholder(float),
            weight_decay=placeholder(float),
            # augmented
            momentum=0.9,
            crop_scale=(0.08, 1.0),
            flip_prob=0.5,
            head_norm="batchnorm",  # batchnorm (MAE: no affine) | none
        )
    )
    if arg == "runlocal":
        c.probe.epochs = 10
    elif arg is not None:
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c.lock()
    return c
