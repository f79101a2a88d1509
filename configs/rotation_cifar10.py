"""RotNet (rotation prediction), ResNet-18 (CIFAR stem) on CIFAR-10.

Gidaris et al. 2018 train on all four rotations of each image (batch of 4N), SGD with momentum
0.9, weight decay 5e-4, lr 0.1 at batch 128, 100 epochs. Here: the shared pretext recipe
(``ssl_jax.config.pretext_preset``: the same optimizer at lr 0.1 x batch/256 with a cosine
decay instead of the paper's steps, random resized crops of scale (0.2, 1) and flips instead of
padded crops). The paper's CIFAR-10 number: 89.06% with a non-linear classifier on the second
conv block of a 4-block NIN (91.16% on the supervised NIN); our one-epoch
measurements are in docs/results.md (Pretext tasks).

  python launch/pretrain.py --config configs/rotation_cifar10.py --workdir runs/rotation_cifar10 \\
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/rotation_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(cifar10_preset(pretrain_defaults()))
    c.method = method_config("rotation", head_layers=1)
    return finish(c, arg)
