"""Context prediction (relative patch position), ResNet-18 (CIFAR stem) on CIFAR-10.

Doersch et al. 2015 use 96 px patches with 48 px gaps and up to 7 px jitter on ImageNet, and
drop 2 of 3 colour channels (or project out green-magenta) against chromatic aberration; scaled
to 32 px images here: 8 px patches, 2 px gaps, 1 px jitter, colour dropping; the shared pretext
recipe (``ssl_jax.config.pretext_preset``) otherwise. The paper's headline: its features,
fine-tuned in R-CNN, beat a random initialisation on VOC 2007 detection (see its table for the
numbers); our one-epoch
measurements are in docs/results.md (Pretext tasks).

  python launch/pretrain.py --config configs/context_cifar10.py --workdir runs/context_cifar10 \\
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits (4 px patches): --config configs/context_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(cifar10_preset(pretrain_defaults()))
    c.method = method_config("context", patch_size=8, gap=2, jitter=1, chroma="drop")
    if arg == "runlocal":  # 16 px digits: 3 x 4 + 2 x 1 + 2 x 1 = 16
        c.method.update(patch_size=4, gap=1, jitter=1)
    return finish(c, arg)
