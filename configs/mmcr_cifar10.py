"""MMCR (Yerxa et al., 2023), ResNet-18 (CIFAR stem) on CIFAR-10, two views per image.

The authors' CIFAR recipe (pretrain_cifar_stl.py) is a ResNet-50 with the CIFAR stem, 40
views of 32 images per batch, Adam at lr 1e-3, 500 epochs, lambda 0 and a 512-128
projector. This library's two-view functions give K = 2 views (ssl_jax/methods/mmcr.py),
so this config keeps the projector, lambda, optimiser (AdamW without weight decay) and
epochs, with 256 images x 2 views per batch and the library's ResNet-18; it is not the
paper's setting and its number is not the paper's. The paper's CIFAR-10 linear accuracy is
unverified here.

  python launch/pretrain.py --config configs/mmcr_cifar10.py --workdir runs/mmcr_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/mmcr_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.epochs = 500
    c.augment.recipe = "byol"
    c.method = method_config("mmcr", lambda_=0.0, proj_hidden_dim=512, proj_dim=128)
    c.optim.update(name="adamw", base_learning_rate=1e-3, weight_decay=0.0)
    c.optim.lr_scaling = "none"
    return finish(c, arg)
