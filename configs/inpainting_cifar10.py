"""Inpainting (Context Encoders, Pathak et al. 2016), ResNet-18 (CIFAR stem) on CIFAR-10.

The central block of half the side (a quarter of the image, the paper's 64 of 128 pixels) is
filled with the mean and reconstructed under an L2 loss on the removed pixels, through a small
upsampling decoder from the last stage (the paper: an AlexNet encoder, a channel-wise fully
connected layer and up-convolutions; its adversarial term is left out).
``--config.method.mask=blocks`` or ``regions`` gives the random masks. The shared pretext
recipe (``ssl_jax.config.pretext_preset``) otherwise. The paper's headline: 56.5% mAP on VOC
2007 classification (fine-tuned, random-region masks); our one-epoch
measurements are in docs/results.md (Pretext tasks).

  python launch/pretrain.py --config configs/inpainting_cifar10.py \\
    --workdir runs/inpainting_cifar10 \\
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/inpainting_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(cifar10_preset(pretrain_defaults()))
    c.method = method_config("inpainting", mask="center", mask_fraction=0.5)
    return finish(c, arg)
