"""MSN, ViT-S/16 on ImageNet (Assran et al., 2022): the authors' pretraining recipe.

The authors' `configs/pretrain/msn_vits16.yaml` (facebookresearch/msn, read for this file):
batch 64 per GPU (1024 in all on their 16 GPUs, the global batch here), 800 epochs, AdamW at
lr 1e-3 (15 warm-up epochs from 2e-4, cosine to 1e-6), weight decay 0.04 (cosine to 0.4 in
their code: constant here), gradients clipped at 3.0 (per parameter group there, the global
norm here); 1024 prototypes of width 256 after a 2048-2048-256 projector with BatchNorm;
temperature 0.1, sharpening 0.25, Sinkhorn on, me-max weight 1; 1 masked anchor view of
224 px with 15% of its patches dropped, 10 focal views of 96 px; target momentum 0.996 -> 1.
The crops here are DINO's multi-crop recipe (their colour-jitter strength 0.5 is not matched).
The paper reports 76.9% linear top-1 for ViT-S/16 (unverified: not checked against the
paper's text here). `--config.method.prior_exponent=0.25` gives PMSN's power-law prior.

  python launch/pretrain.py --multihost --config configs/msn_imagenet.py --workdir DIR \\
    --config.data.tfds_data_dir=/path/to/tensorflow_datasets
Smoke test on the embedded digits: --config configs/msn_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=1024)
    c.epochs = 800
    c.schedule.warmup_epochs = 15
    c.schedule.end_lr_factor = 1e-6 / 1e-3
    c.augment.recipe = "dino"
    c.augment.global_crop_scale = (0.3, 1.0)
    c.augment.local_crop_scale = (0.05, 0.3)
    c.augment.local_crop_size = 96
    c.augment.num_local_crops = 10
    c.model.backbone = "vit_small"
    c.model.patch_size = 16
    c.model.img_size = 224
    c.method = method_config(
        "msn", proj_hidden_dim=2048, proj_dim=256, num_prototypes=1024, temperature=0.1,
        sharpen_temperature=0.25, use_sinkhorn=True, regularization_weight=1.0,
        prior_exponent=0.0, patch_drop=0.15, momentum=0.996, final_momentum=1.0,
    )  # fmt: skip
    c.optim.update(name="adamw", base_learning_rate=1e-3 * 256 / 1024, weight_decay=0.04)
    c.optim.grad_clip_norm = 3.0
    c.export.network = "target"
    if arg == "runlocal":
        c.augment.local_crop_size = 8
        c.method.num_prototypes = 64
    return finish(c, arg)
