"""Masked autoencoder (MAE), ViT-Tiny with 4 px patches on CIFAR-10 (64 patches of 32 px images).

He et al. 2022 pretrain ViT-B/16 on ImageNet for 800-1600 epochs: 75% of the patches masked, a
512-wide 8-block decoder, per-patch normalised pixel targets, AdamW (betas 0.9, 0.95) at 1.5e-4
x batch/256 with weight decay 0.05 and 40 warm-up epochs, random resized crops of scale (0.2,
1) and flips (`configs/mae_imagenet.py`). Here the same recipe on CIFAR-10 with a ViT-Tiny/4
encoder, a 256-wide 4-block decoder and 10 warm-up epochs of 200. The paper's headline: 83.6%
ImageNet top-1 after fine-tuning ViT-B (68.0% linear probe); our one-epoch
measurements are in docs/results.md (Pretext tasks).

  python launch/pretrain.py --config configs/mae_cifar10.py --workdir runs/mae_cifar10 \\
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/mae_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(cifar10_preset(pretrain_defaults()))
    c.epochs = 200
    c.schedule.warmup_epochs = 10
    c.model.backbone = "vit_tiny"
    c.model.patch_size = 4
    c.model.img_size = 32
    c.model.pool = "cls"
    c.method = method_config(
        "mae", mask_ratio=0.75, decoder_dim=256, decoder_depth=4, decoder_heads=8
    )
    c.optim.update(name="adamw", base_learning_rate=1.5e-4, weight_decay=0.05, b2=0.95)
    return finish(c, arg)
