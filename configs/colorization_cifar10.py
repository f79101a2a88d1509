"""Colorization (Zhang et al. 2016), ResNet-18 (CIFAR stem) on CIFAR-10.

The paper's classification loss over the in-gamut ab bins (grid 10: 261 bins computed from the
sRGB gamut, the paper's set has 313), soft-encoded targets, class rebalancing with lambda 0.5,
predictions at 1/4 of the input resolution (8x8 for 32 px images, from the last stage through a
small upsampling decoder). The backbone sees only L (its export's input spec says ``lab_l``).
The shared pretext recipe (``ssl_jax.config.pretext_preset``) otherwise; the paper trains with
Adam (lr 3e-5, betas 0.9, 0.99, weight decay 1e-3) for 450k iterations of 40 ImageNet images.
``--config.method.loss=regression`` gives the L2 baseline. The paper's headline: 65.9% mAP on
VOC 2007 classification (fine-tuned) and a 32% "real" rate in its colorization Turing test; our
one-epoch measurements are in docs/results.md (Pretext tasks).

  python launch/pretrain.py --config configs/colorization_cifar10.py \\
    --workdir runs/colorization_cifar10 \\
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/colorization_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(cifar10_preset(pretrain_defaults()))
    c.method = method_config("colorization", loss="classification", output_stride=4)
    return finish(c, arg)
