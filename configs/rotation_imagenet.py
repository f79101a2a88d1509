"""RotNet (rotation prediction), ResNet-50 on ImageNet.

Gidaris et al. 2018 train AlexNet on ImageNet with all four rotations of each image in the
batch, SGD with momentum 0.9 and weight decay 5e-4. Here with a ResNet-50 (as Kolesnikov et
al. 2019 revisit it) and the shared pretext recipe (``ssl_jax.config.pretext_preset``: lr 0.1
x batch/256, cosine decay, crop and flip), 30 epochs. Not run here (no ImageNet and no
accelerator on this machine).

  python launch/pretrain.py --config configs/rotation_imagenet.py --workdir runs/rotation_imagenet
Smoke test on the embedded digits: --config configs/rotation_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(imagenet_preset(pretrain_defaults(), batch_size=256))
    c.epochs = 30
    c.method = method_config("rotation", head_layers=1)
    return finish(c, arg)
