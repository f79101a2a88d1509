"""Barlow Twins, ResNet-18 (CIFAR stem) on CIFAR-10.

solo-learn's CIFAR recipe: LARS, lr 0.3 x batch/256, weight decay 1e-4, projector
2048-2048-2048, lambda 0.0051, BYOL's asymmetric views, batch 256, 1000 epochs. solo-learn
reports about 92.1% linear top-1.

  python launch/pretrain.py --config configs/barlow_twins_cifar10.py --workdir runs/barlow \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/barlow_twins_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "byol"
    c.method = method_config(
        "barlow_twins",
        proj_hidden_dim=2048,
        proj_dim=2048,
        lambda_=0.0051,
        scale_loss=1.0,  # solo-learn's CIFAR recipe: 0.1 (with its clipped LARS)
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.3
    c.optim.weight_decay = 1e-4
    return finish(c, arg)
