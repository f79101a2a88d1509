"""I-JEPA, ViT-H/14 on ImageNet at 224 px (Assran et al., 2023): the authors' recipe.

The authors' `configs/in1k_vith14_ep300.yaml` (facebookresearch/ijepa, read for this file):
batch 2048 (128 on each of 16 GPUs), 300 epochs, AdamW at lr 1e-3 (40 warm-up epochs from
2e-4, cosine to 1e-6), weight decay 0.04 (cosine to 0.4 in their code), bfloat16; one random
resized crop of scale (0.3, 1), no flip, colour or blur; 4 target blocks of scale
(0.15, 0.2) and aspect ratio (0.75, 1.5), one context block of scale (0.85, 1) without the
targets, min_keep 10; a predictor of depth 12 and width 384 (the encoder's 16 heads);
`F.smooth_l1_loss` to the layer-normed target features; target momentum 0.996 -> 1 linearly.
The paper reports 79.3% ImageNet linear top-1 for this ViT-H/14 (300 epochs; Table 1):
unverified here (the number could not be checked against the paper's text in this session).

Differences from the authors: the weight decay is constant (ssl_jax.optim has no weight-decay
schedule); the warm-up starts from 0, not 2e-4; the ViT has a [CLS] token and learnable
position embeddings (theirs: none, and fixed sine-cosine ones); the context keeps a fixed
floor(0.3 x 169) = 50 tokens and each target block 30 (their collator truncates to the
batch's shortest; ssl_jax/pretext/multiblock.py). Their linear probe reads the target
encoder's average-pooled last layer (their ViT-H results concatenate the last four layers'
[CLS]-free features: not available here). Not run here (no ImageNet, no accelerator).

  python launch/pretrain.py --multihost --config configs/ijepa_imagenet.py --workdir DIR \\
    --config.data.tfds_data_dir=/path/to/tensorflow_datasets
Smoke test on the embedded digits: --config configs/ijepa_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=2048)
    c.epochs = 300
    c.schedule.warmup_epochs = 40
    c.schedule.end_lr_factor = 1e-6 / 1e-3
    c.augment.recipe = "crop_flip"
    c.augment.crop_scale = (0.3, 1.0)
    c.augment.flip_prob = 0.0
    c.model.backbone = "vit_huge"
    c.model.patch_size = 14
    c.model.img_size = 224
    c.model.pool = "mean"
    c.model.dtype = "bfloat16"
    c.method = method_config(
        "ijepa",
        predictor_dim=384,
        predictor_depth=12,
        num_targets=4,
        target_scale=(0.15, 0.2),
        target_aspect_ratio=(0.75, 1.5),
        context_scale=(0.85, 1.0),
        min_keep=10,
        loss="smooth_l1",
        momentum=0.996,
        final_momentum=1.0,
        momentum_schedule="linear",
    )
    c.optim.update(name="adamw", base_learning_rate=1e-3 * 256 / 2048, weight_decay=0.04)
    c.export.network = "target"
    if arg == "runlocal":  # 16 px with 4 px patches: a 4x4 grid, target blocks of 1-2 patches
        c.method.min_keep = 0
        c.method.context_keep = 0.5
    return finish(c, arg)
