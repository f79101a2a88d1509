"""SimMIM, ViT-Tiny with 4 px patches on CIFAR-10 (64 patches of 32 px images).

The ImageNet recipe (configs/simmim_imagenet.py) scaled down: 32 px mask patches would be
the whole image, so the mask patches are 8 px (16 per image, ceil(0.6 x 16) = 10 masked,
twice the model's patch as 32 px is for ViT-B/16's 16 px), 200 epochs with 10 warm-up,
AdamW at 5e-5 x batch/256 with weight decay 0.05. No CIFAR-10 number of the paper exists
to compare with (the paper reports ImageNet fine-tuning only).

  python launch/pretrain.py --config configs/simmim_cifar10.py --workdir runs/simmim_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/simmim_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(cifar10_preset(pretrain_defaults()))
    c.epochs = 200
    c.schedule.warmup_epochs = 10
    c.augment.crop_scale = (0.67, 1.0)
    c.model.backbone = "vit_tiny"
    c.model.patch_size = 4
    c.model.img_size = 32
    c.model.pool = "cls"
    c.method = method_config("simmim", mask_ratio=0.6, mask_patch_size=8)
    c.optim.update(name="adamw", base_learning_rate=5e-5, weight_decay=0.05)
    return finish(c, arg)
