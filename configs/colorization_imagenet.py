"""Colorization (Zhang et al. 2016), ResNet-50 on ImageNet.

The paper's task at its resolution: 224 px inputs (L only), ab-bin distributions at 56 x 56
(``output_stride=4``), soft-encoded targets, class rebalancing with lambda 0.5, and its
optimizer: Adam with lr 3e-5, betas (0.9, 0.99) and weight decay 1e-3 (here with a cosine
decay over 30 epochs instead of its 450k iterations of 40 images and step decays; the paper
used a VGG-style network, not a ResNet-50). The paper reports 65.9% mAP on VOC 2007
classification after fine-tuning. Not run here (no ImageNet and no accelerator on this
machine).

  python launch/pretrain.py --config configs/colorization_imagenet.py \\
    --workdir runs/colorization_imagenet
Smoke test on the embedded digits: --config configs/colorization_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(imagenet_preset(pretrain_defaults(), batch_size=256))
    c.epochs = 30
    c.method = method_config("colorization", loss="classification", output_stride=4)
    c.optim.update(name="adamw", base_learning_rate=3e-5, b2=0.99, weight_decay=1e-3)
    c.optim.lr_scaling = "none"
    return finish(c, arg)
