"""TiCo (Zhu et al., 2022), ResNet-18 (CIFAR stem) on CIFAR-10.

beta 0.9 and rho 20 (the paper's defaults, also lightly's), a 2048-256 projector, BYOL's
views, batch 256, 1000 epochs. The optimiser (LARS, lr 0.3 x batch/256, weight decay 1e-4)
is configs/vicreg_cifar10.py's, not a published TiCo CIFAR recipe; no CIFAR-10 number of
the paper is verified here (unverified).

  python launch/pretrain.py --config configs/tico_cifar10.py --workdir runs/tico_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/tico_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "byol"
    c.method = method_config("tico", beta=0.9, rho=20.0, proj_hidden_dim=2048, proj_dim=256)
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.3
    c.optim.weight_decay = 1e-4
    return finish(c, arg)
