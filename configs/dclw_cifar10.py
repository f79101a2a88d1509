"""DCLW (Yeh et al., 2022): SimCLR with the weighted decoupled loss, ResNet-18 on CIFAR-10.

SimCLR's networks and views (configs/simclr_cifar10.py) with ``method.loss="dclw"``: the
positive leaves InfoNCE's denominator and its term is weighted by a von Mises-Fisher
kernel of width sigma=0.5 (the paper's value); temperature 0.1 (authors' code). The
paper's CIFAR-10 numbers (ResNet-18, batch 256, 200 epochs, kNN/linear) are unverified here.

  python launch/pretrain.py --config configs/dclw_cifar10.py --workdir runs/dclw_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/dclw_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "simclr"
    c.augment.blur_prob = 0.0
    c.method = method_config(
        "simclr", loss="dclw", sigma=0.5, temperature=0.1, proj_hidden_dim=2048, proj_dim=256
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.4
    c.optim.weight_decay = 1e-5
    return finish(c, arg)
