"""MoCo v3, ViT-B/16 (default) or ViT-S/16 (``:vit_small``) on ImageNet (Chen et al., 2021).

The authors' ViT recipe (CONFIG.md): batch 4096, AdamW with lr 1.5e-4 x batch/256 and weight
decay 0.1 on every parameter, 300 epochs with 40 warmup epochs (cosine), projector 3 layers
4096-256 and predictor 2 layers 4096-256 (BN, last BN without affine), temperature 0.2,
momentum 0.99 -> 1 (cosine), BYOL's asymmetric views at 224 px with crop scale (0.08, 1).
They report 76.7% linear top-1 for ViT-B/16 and 73.2% for ViT-S/16. Not implemented: the
authors' frozen random patch projection (``--stop-grad-conv1``), used for stability.

  python launch/pretrain.py --multihost --config configs/mocov3_imagenet.py --workdir DIR \
    --config.data.tfds_data_dir=/path/to/tensorflow_datasets
ViT-S/16: --config configs/mocov3_imagenet.py:vit_small
Smoke test on the embedded digits: --config configs/mocov3_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    if arg not in (None, "runlocal", "vit_small"):
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal, vit_small.")
    c = imagenet_preset(pretrain_defaults(), batch_size=4096)
    c.epochs = 300
    c.augment.recipe = "byol"
    c.augment.crop_scale = (0.08, 1.0)
    c.model.backbone = "vit_small" if arg == "vit_small" else "vit_base"
    c.model.patch_size = 16
    c.model.img_size = 224
    c.method = method_config(
        "mocov3",
        temperature=0.2,
        proj_hidden_dim=4096,
        proj_dim=256,
        proj_num_layers=3,
        pred_hidden_dim=4096,
        momentum=0.99,
        momentum_schedule="cosine",
        final_momentum=1.0,
    )
    c.optim.name = "adamw"
    c.optim.base_learning_rate = 1.5e-4
    c.optim.weight_decay = 0.1
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.exclude_bias_and_norm = False
    c.schedule.warmup_epochs = 40
    return finish(c, None if arg == "vit_small" else arg)
