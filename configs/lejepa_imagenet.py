"""LeJEPA, ViT-H/14 on ImageNet (Balestriero & LeCun, 2025).

The authors' README ("GOTO hyperparameters"): 2 global crops of 224 px, scale (0.3, 1), and
6 local crops of 98 px, scale (0.05, 0.3), each with flip, colour jitter (p 0.8; 0.4, 0.4,
0.2, 0.1), greyscale (0.2), blur (0.5) and solarisation (0.2); AdamW at 5e-4 with weight
decay 5e-2 (ViTs), linear warm-up then cosine to lr / 1000, bfloat16; lambda 0.05 (the
paper's recommended value); SIGReg with 256 directions and 17 integration points on [-5, 5].
The abstract reports 79% ImageNet linear top-1 for a ViT-H/14 (frozen backbone; their probe
reads the [CLS] tokens of the last two layers, with LayerNorm). The batch size, epochs and
projector widths here are not checked against the paper (batch 512, 100 epochs, projector
2048-2048-128 are this file's choices): unverified. Local crops are 98 px as the authors'
(7x7 patches of 14 px). Not run here (no ImageNet, no accelerator).

  python launch/pretrain.py --multihost --config configs/lejepa_imagenet.py --workdir DIR \\
    --config.data.tfds_data_dir=/path/to/tensorflow_datasets
Smoke test on the embedded digits: --config configs/lejepa_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=512)
    c.epochs = 100
    c.augment.recipe = "dino"
    for field, value in dict(
        flip_prob=0.5, jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
        gray_prob=0.2, blur_prob=0.5, solarize_prob=0.2, global_crop_scale=(0.3, 1.0),
        local_crop_scale=(0.05, 0.3), num_local_crops=6, local_crop_size=98,
    ).items():  # fmt: skip
        c.augment[field] = value
    c.model.backbone = "vit_huge"
    c.model.patch_size = 14
    c.model.img_size = 224
    c.model.dtype = "bfloat16"
    c.method = method_config(
        "lejepa", lamb=0.05, num_slices=256, proj_hidden_dim=2048, proj_dim=128, proj_layers=3
    )
    c.optim.update(name="adamw", base_learning_rate=5e-4, lr_scaling="none", weight_decay=5e-2)
    c.schedule.end_lr_factor = 1e-3
    if arg == "runlocal":
        c.augment.local_crop_size = 8
    return finish(c, arg)
