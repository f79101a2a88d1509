"""DINO, ResNet-18 (CIFAR stem) on CIFAR-10, evaluated on the teacher.

solo-learn's CIFAR recipe (scripts/pretrain/cifar/dino.yaml): LARS, lr 0.3 x batch/256,
weight decay 1e-6, batch 256, 1000 epochs, 10 warmup epochs, head 2048-2048-256 (GELU, no
BN) -> 4096 weight-normalised outputs, last layer frozen for the first epoch, student
temperature 0.1, teacher temperature 0.04 -> 0.07 over the first 50 epochs, teacher momentum
0.9995 -> 1 (cosine), center momentum 0.9, BYOL's asymmetric colour views without blur.
solo-learn reports 89.52% linear top-1 with 2 crops of 32 px, scale (0.08, 1). This config
adds DINO's multi-crop: 2 global 32-px crops, scale (0.4, 1), and 4 local 16-px crops,
scale (0.05, 0.4); for solo-learn's exact recipe pass --config.augment.num_local_crops=0
--config.augment.global_crop_scale="(0.08, 1.0)". The export is the teacher (DINO evaluates
the teacher). Schedules given in epochs are converted to steps from the batch size.
The kNN monitor (every 10,000 steps) embeds images at the global-crop size.

  python launch/pretrain.py --config configs/dino_cifar10.py --workdir runs/dino_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/dino_cifar10.py:runlocal

Variant ``vit`` (``configs/dino_cifar10.py:vit``, also ``vit,runlocal``): the DINO authors'
architecture, ViT-Tiny with 4-pixel patches (``cifar10_vit``), with their ViT recipe
(``configs/dino_imagenet.py``): AdamW, lr 5e-4 x batch/256, weight decay 0.04, teacher
momentum 0.996 -> 1, teacher temperature 0.04; views, head and the rest as above.
"""

from ssl_jax.config import cifar10_preset, cifar10_vit, epoch_steps, finish, pretrain_defaults
from ssl_jax.methods import method_config

TRAIN_IMAGES = 50_000


def get_config(arg=None):
    variants = [v for v in (arg or "").split(",") if v]
    if set(variants) - {"vit", "runlocal"} or len(set(variants)) < len(variants):
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal, vit, vit,runlocal.")
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "dino"
    c.augment.blur_prob = 0.0
    c.augment.global_crop_scale = (0.4, 1.0)
    c.augment.local_crop_scale = (0.05, 0.4)
    c.augment.local_crop_size = 16
    c.augment.num_local_crops = 4
    c.method = method_config(
        "dino",
        proj_hidden_dim=2048,
        bottleneck_dim=256,
        out_dim=4096,
        head_layers=3,
        head_use_bn=False,
        norm_last_layer=True,
        student_temp=0.1,
        warmup_teacher_temp=0.04,
        teacher_temp=0.07,
        warmup_teacher_temp_steps=epoch_steps(c, 50, TRAIN_IMAGES),
        center_momentum=0.9,
        base_momentum=0.9995,
        freeze_last_layer_steps=epoch_steps(c, 1, TRAIN_IMAGES),
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.3
    c.optim.weight_decay = 1e-6
    c.export.network = "target"
    if "vit" in variants:
        cifar10_vit(c)
        c.optim.base_learning_rate = 5e-4
        c.optim.weight_decay = 0.04
        c.method.base_momentum = 0.996
        c.method.teacher_temp = 0.04
        c.method.warmup_teacher_temp_steps = 0
    if "runlocal" in variants:
        c.augment.local_crop_size = 8
        c.method.warmup_teacher_temp_steps = 10
        c.method.freeze_last_layer_steps = 2
    return finish(c, "runlocal" if "runlocal" in variants else None)
