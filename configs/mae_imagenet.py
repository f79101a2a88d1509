"""Masked autoencoder (MAE), ViT-B/16 on ImageNet: the paper's pretraining recipe.

He et al. 2022: 75% of the 196 patches masked, a 512-wide 8-block decoder with 16 heads,
per-patch normalised pixel targets, AdamW (betas 0.9, 0.95, weight decay 0.05) at
1.5e-4 x batch/256 with batch 4096, 40 warm-up epochs and cosine decay over 800 epochs,
random resized crops of scale (0.2, 1) and flips. The paper reports 83.6% top-1 after
fine-tuning (100 epochs, ``configs/finetune.py`` with the MAE settings in its docstring) and
68.0% with a linear probe. Not run here (no ImageNet and no accelerator on this machine).

  python launch/pretrain.py --config configs/mae_imagenet.py --workdir runs/mae_imagenet
Smoke test on the embedded digits: --config configs/mae_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(imagenet_preset(pretrain_defaults(), batch_size=4096))
    c.epochs = 800
    c.schedule.warmup_epochs = 40
    c.model.backbone = "vit_base"
    c.model.patch_size = 16
    c.model.img_size = 224
    c.model.pool = "cls"
    c.method = method_config(
        "mae", mask_ratio=0.75, decoder_dim=512, decoder_depth=8, decoder_heads=16
    )
    c.optim.update(name="adamw", base_learning_rate=1.5e-4, weight_decay=0.05, b2=0.95)
    return finish(c, arg)
