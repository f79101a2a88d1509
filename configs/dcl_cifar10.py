"""DCL (Yeh et al., 2022): SimCLR with the decoupled contrastive loss, ResNet-18 on CIFAR-10.

SimCLR's networks and views (configs/simclr_cifar10.py) with ``method.loss="dcl"``: the
positive leaves InfoNCE's denominator. Temperature 0.1 as the authors' code default; the
weighted form is ``--config.method.loss=dclw`` (sigma 0.5: configs/dclw_cifar10.py). The
paper's CIFAR-10 numbers (ResNet-18, batch 256, 200 epochs, kNN/linear) are unverified here.

  python launch/pretrain.py --config configs/dcl_cifar10.py --workdir runs/dcl_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/dcl_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "simclr"
    c.augment.blur_prob = 0.0
    c.method = method_config(
        "simclr", loss="dcl", temperature=0.1, proj_hidden_dim=2048, proj_dim=256
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.4
    c.optim.weight_decay = 1e-5
    return finish(c, arg)
