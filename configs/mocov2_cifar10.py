"""MoCo v2+, ResNet-18 (CIFAR stem) on CIFAR-10.

solo-learn's CIFAR MoCo v2+ recipe: SGD (momentum 0.9) with lr 0.3 x batch/256, weight decay
1e-4, batch 256, 1000 epochs with 10 warmup epochs, projector 2048-256 without BN, queue of
32768 keys per view, temperature 0.2, symmetric loss, key-encoder momentum 0.99 -> 0.999
(cosine), SimCLR-style views with jitter 0.4/0.4/0.4/0.1 and blur 0.5 at 32 px. solo-learn
reports about 92.9% linear top-1 for MoCo v2+. BatchNorm is global per view, as solo-learn's
SyncBN (no shuffle-BN; see ``ssl_jax/methods/moco.py``).

  python launch/pretrain.py --config configs/mocov2_cifar10.py --workdir runs/mocov2_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/mocov2_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "simclr"
    c.augment.brightness = 0.4
    c.augment.contrast = 0.4
    c.augment.saturation = 0.4
    c.augment.hue = 0.1
    c.augment.blur_prob = 0.5
    c.method = method_config(
        "mocov2",
        temperature=0.2,
        proj_hidden_dim=2048,
        proj_dim=256,
        queue_length=32768,
        momentum=0.99,
        momentum_schedule="cosine",
        final_momentum=0.999,
        symmetric=True,
    )
    c.optim.name = "sgd"
    c.optim.base_learning_rate = 0.3
    c.optim.weight_decay = 1e-4
    c.optim.momentum = 0.9
    c.optim.exclude_bias_and_norm = False
    return finish(c, arg)
