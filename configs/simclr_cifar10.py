"""SimCLR, ResNet-18 (CIFAR stem) on CIFAR-10.

Recipe of solo-learn's CIFAR SimCLR (LARS, lr 0.4 x batch/256, weight decay 1e-5,
temperature 0.2, 2048-256 projector, batch 256, 1000 epochs, 10 warmup epochs), views
as in SimCLR's CIFAR experiments (no blur). solo-learn reports about 90.7% linear top-1
for this recipe; the SimCLR paper reports 94.0% with a ResNet-50 (1000 epochs, t=0.5).

Launch (downloads CIFAR-10 through tensorflow-datasets):
  python launch/pretrain.py --config configs/simclr_cifar10.py --workdir runs/simclr_cifar10
The local copy in ../shared/data instead:
  python launch/pretrain.py --config configs/simclr_cifar10.py --workdir runs/simclr_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/simclr_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "simclr"
    c.augment.blur_prob = 0.0
    c.method = method_config(
        "simclr",
        temperature=0.2,
        proj_hidden_dim=2048,
        proj_dim=256,
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.4
    c.optim.weight_decay = 1e-5
    return finish(c, arg)
