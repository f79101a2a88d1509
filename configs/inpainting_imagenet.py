"""Inpainting (Context Encoders, Pathak et al. 2016), ResNet-50 on ImageNet.

The paper learns features on 128 px images; here the ResNet's 224 px views, with
random-region masks covering a quarter of the image (``ssl_jax.pretext.random_region_masks``,
smooth random blobs standing in for the paper's PASCAL shapes), the L2 reconstruction loss
only (no adversarial term), and the shared pretext recipe's optimizer
(``ssl_jax.config.pretext_preset``) instead of the paper's Adam. The paper reports 56.5% mAP
on VOC 2007 classification after fine-tuning (AlexNet, random-region masks). Not run here (no
ImageNet and no accelerator on this machine).

  python launch/pretrain.py --config configs/inpainting_imagenet.py \\
    --workdir runs/inpainting_imagenet
Smoke test on the embedded digits: --config configs/inpainting_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(imagenet_preset(pretrain_defaults(), batch_size=256))
    c.epochs = 30
    c.method = method_config("inpainting", mask="regions", region_area=0.25)
    return finish(c, arg)
