"""NNCLR, ResNet-18 (CIFAR stem) on CIFAR-10.

solo-learn's CIFAR NNCLR recipe: LARS, lr 0.4 x batch/256, weight decay 1e-5, batch 256,
1000 epochs, 10 warmup epochs, projector 2048-2048-256, predictor 4096-256, a support set of
65,536 projections, temperature 0.2, BYOL's asymmetric views at 32 px. solo-learn reports
about 91.9% linear top-1 for this recipe.

  python launch/pretrain.py --config configs/nnclr_cifar10.py --workdir runs/nnclr_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/nnclr_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "byol"
    c.method = method_config(
        "nnclr",
        temperature=0.2,
        proj_hidden_dim=2048,
        proj_dim=256,
        pred_hidden_dim=4096,
        queue_length=65536,
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.4
    c.optim.weight_decay = 1e-5
    return finish(c, arg)
