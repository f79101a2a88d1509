"""Jigsaw puzzles, ResNet-50 on ImageNet: the paper's geometry.

Noroozi & Favaro 2016: a 225 px crop cut into 3x3 cells of 75 px, a random 64 px tile in each,
each tile normalised on its own, 1000 permutations of maximal Hamming distance (here chosen by
greedy max-min, ``ssl_jax.pretext.hamming_permutations``). The optimizer is the shared pretext
recipe (``ssl_jax.config.pretext_preset``), not the paper's. The paper reports 67.6% mAP on
VOC 2007 classification after fine-tuning (AlexNet). Not run here (no ImageNet and no
accelerator on this machine).

  python launch/pretrain.py --config configs/jigsaw_imagenet.py --workdir runs/jigsaw_imagenet
Smoke test on the embedded digits (4 px tiles): --config configs/jigsaw_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(imagenet_preset(pretrain_defaults(), batch_size=256))
    c.epochs = 70
    c.augment.crop_size = 225
    c.method = method_config("jigsaw", num_permutations=1000, grid=3, tile_size=64)
    if arg == "runlocal":  # 16 px digits: cells of 5 px
        c.method.tile_size = 4
    return finish(c, arg)
