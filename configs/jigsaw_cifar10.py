"""Jigsaw puzzles, ResNet-18 (CIFAR stem) on CIFAR-10.

Noroozi & Favaro 2016 cut a 225 px crop into 3x3 cells of 75 px, take a random 64 px tile in
each, normalise every tile on its own, and classify 1000 maximal-Hamming permutations
(ImageNet). Scaled to 32 px images here: 10 px cells, 8 px tiles, 100 permutations; the shared
pretext recipe (``ssl_jax.config.pretext_preset``) otherwise. The paper's headline: 67.6% mAP
on VOC 2007 classification (fine-tuned); our one-epoch
measurements are in docs/results.md (Pretext tasks).

  python launch/pretrain.py --config configs/jigsaw_cifar10.py --workdir runs/jigsaw_cifar10 \\
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits (4 px tiles): --config configs/jigsaw_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(cifar10_preset(pretrain_defaults()))
    c.method = method_config("jigsaw", num_permutations=100, grid=3, tile_size=8)
    if arg == "runlocal":  # 16 px digits: cells of 5 px
        c.method.tile_size = 4
    return finish(c, arg)
