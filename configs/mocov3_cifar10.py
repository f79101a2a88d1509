"""MoCo v3, ResNet-18 (CIFAR stem) on CIFAR-10.

solo-learn's CIFAR MoCo v3 recipe: LARS with lr 0.3 x batch/256 (solo-learn's LARS uses
eta 0.02 and clips the adaptive lr, here trust coefficient 0.02 without clipping), weight
decay 1e-6, batch 256, 1000 epochs with 10 warmup epochs, projector 4096-256 with 2 layers
(the authors' ResNet head), predictor 4096-256, temperature 0.2, momentum 0.99 -> 1
(cosine), BYOL's asymmetric views at 32 px. The predictor ends in BN without affine as in the
authors' code (solo-learn's ResNet predictor has no last BN). solo-learn reports about 93%
linear top-1 for MoCo v3 (ResNet-18, 1000 epochs).

  python launch/pretrain.py --config configs/mocov3_cifar10.py --workdir runs/mocov3_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/mocov3_cifar10.py:runlocal

Variant ``vit`` (``configs/mocov3_cifar10.py:vit``, also ``vit,runlocal``): ViT-Tiny with
4-pixel patches (``cifar10_vit``) and the authors' ViT recipe (``configs/mocov3_imagenet.py``):
a 3-layer projector, AdamW, lr 1.5e-4 x batch/256, weight decay 0.1. The paper's frozen random
patch projection is not applied (the patch embedding trains).
"""

from ssl_jax.config import cifar10_preset, cifar10_vit, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    variants = [v for v in (arg or "").split(",") if v]
    if set(variants) - {"vit", "runlocal"} or len(set(variants)) < len(variants):
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal, vit, vit,runlocal.")
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "byol"
    c.method = method_config(
        "mocov3",
        temperature=0.2,
        proj_hidden_dim=4096,
        proj_dim=256,
        proj_num_layers=2,
        pred_hidden_dim=4096,
        momentum=0.99,
        momentum_schedule="cosine",
        final_momentum=1.0,
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.3
    c.optim.weight_decay = 1e-6
    c.optim.trust_coefficient = 0.02
    if "vit" in variants:
        cifar10_vit(c)
        c.method.proj_num_layers = 3
        c.optim.base_learning_rate = 1.5e-4
        c.optim.weight_decay = 0.1
    return finish(c, "runlocal" if "runlocal" in variants else None)
