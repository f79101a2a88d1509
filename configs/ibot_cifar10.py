"""iBOT, ViT-Tiny with 4 px patches on CIFAR-10 (64 patches of 32 px images), teacher exported.

The authors publish no CIFAR recipe and no CIFAR number (their CIFAR results fine-tune
ImageNet models), so there is no reported number for this setting. This is their ViT-S/16
recipe (configs/ibot_imagenet.py) at CIFAR scale: 2 global 32-px crops, scale (0.25, 1), and 4
local 16-px crops, scale (0.05, 0.25); blockwise masks on half the images, ratio U(0.1, 0.5);
one shared head of 4096 weight-normalised outputs (the DINO CIFAR config's size); teacher
temperature 0.04 -> 0.07 over 30 epochs for [CLS] and patches; AdamW at 5e-4 x batch/256,
weight decay 0.04, 10 warm-up epochs; stochastic depth 0.1 in the student; teacher momentum
0.996 -> 1. Schedules given in epochs are converted to steps from the batch size.

  python launch/pretrain.py --config configs/ibot_cifar10.py --workdir runs/ibot_cifar10 \\
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/ibot_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, epoch_steps, finish, pretrain_defaults
from ssl_jax.methods import method_config

TRAIN_IMAGES = 50_000


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.epochs = 800
    c.augment.recipe = "dino"
    c.augment.global_crop_scale = (0.25, 1.0)
    c.augment.local_crop_scale = (0.05, 0.25)
    c.augment.local_crop_size = 16
    c.augment.num_local_crops = 4
    c.model.backbone = "vit_tiny"
    c.model.patch_size = 4
    c.model.img_size = 32
    c.model.mask_token = True
    c.model.drop_path_rate = 0.1
    c.method = method_config(
        "ibot",
        out_dim=4096,
        patch_out_dim=4096,
        shared_head=True,
        norm_last_layer=False,
        warmup_teacher_temp=0.04,
        teacher_temp=0.07,
        warmup_teacher_patch_temp=0.04,
        teacher_patch_temp=0.07,
        warmup_teacher_temp_steps=epoch_steps(c, 30, TRAIN_IMAGES),
        mask_ratios=(0.0, 0.3),
        mask_ratio_vars=(0.0, 0.2),
        base_momentum=0.996,
        freeze_last_layer_steps=epoch_steps(c, 1, TRAIN_IMAGES),
    )
    c.optim.name = "adamw"
    c.optim.base_learning_rate = 5e-4
    c.optim.weight_decay = 0.04
    c.export.network = "target"
    if arg == "runlocal":
        c.augment.local_crop_size = 8
        c.method.warmup_teacher_temp_steps = 10
        c.method.freeze_last_layer_steps = 2
    return finish(c, arg)
