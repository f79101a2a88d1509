"""BYOL, ResNet-18 (CIFAR stem) on CIFAR-10.

solo-learn's CIFAR recipe: LARS, lr 1.0 x batch/256, weight decay 1e-5, batch 256, 1000
epochs, 10 warmup epochs, projector 4096-256, predictor 4096-256, target momentum 0.99 -> 1
(cosine), BYOL's asymmetric views (blur 1.0/0.1, solarize 0/0.2) at 32 px. solo-learn
reports about 92.6% linear top-1 for this recipe.

  python launch/pretrain.py --config configs/byol_cifar10.py --workdir runs/byol_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/byol_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "byol"
    c.method = method_config(
        "byol",
        proj_hidden_dim=4096,
        proj_dim=256,
        pred_hidden_dim=4096,
        base_momentum=0.99,
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 1.0
    c.optim.weight_decay = 1e-5
    return finish(c, arg)
