"""Context prediction (relative patch position), ResNet-50 on ImageNet: the paper's geometry.

Doersch et al. 2015: 96 px patches in a 3x3 grid with 48 px gaps and up to 7 px jitter, and
colour dropping against chromatic aberration (their other defence, projection, is
``--config.method.chroma=project``); a crop of 3 x 96 + 2 x 48 + 2 x 7 = 398 px is needed,
so images are decoded at 400 px. The optimizer is the shared pretext recipe
(``ssl_jax.config.pretext_preset``), not the paper's. Not run here (no ImageNet and no
accelerator on this machine).

  python launch/pretrain.py --config configs/context_imagenet.py --workdir runs/context_imagenet
Smoke test on the embedded digits (4 px patches): --config configs/context_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(imagenet_preset(pretrain_defaults(), batch_size=256))
    c.epochs = 30
    c.data.image_size = 400
    c.augment.crop_size = 400
    c.augment.crop_scale = (0.5, 1.0)
    c.method = method_config("context", patch_size=96, gap=48, jitter=7, chroma="drop")
    if arg == "runlocal":  # 16 px digits: 3 x 4 + 2 x 1 + 2 x 1 = 16
        c.method.update(patch_size=4, gap=1, jitter=1)
    return finish(c, arg)
