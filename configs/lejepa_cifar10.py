"""LeJEPA, ResNet-18 (CIFAR stem) on CIFAR-10 (Balestriero & LeCun, 2025).

The authors' recipe (their README's "GOTO hyperparameters") at CIFAR scale: 2 global crops
of 32 px, scale (0.3, 1), and 6 local crops of 16 px, scale (0.05, 0.3), every crop with the
same flip, colour jitter (p 0.8; 0.4, 0.4, 0.2, 0.1), greyscale (0.2), blur (0.5) and
solarisation (0.2); a 3-layer projector 2048-2048-128 with BatchNorm; lambda 0.05; SIGReg
with 256 directions and the Epps-Pulley integral on 17 points of [-5, 5]; AdamW at 5e-4 with
weight decay 5e-4 (their ResNet value), warm-up then cosine to lr / 1000. The paper reports
no CIFAR-10 number in what was read for this file; none is measured here.

  python launch/pretrain.py --config configs/lejepa_cifar10.py --workdir runs/lejepa_cifar10 \\
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/lejepa_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def lejepa_views(c):
    """The authors' views: DINO's multi-crop with one set of augmentations for every crop."""
    c.augment.recipe = "dino"
    c.augment.flip_prob = 0.5
    c.augment.jitter_prob = 0.8
    c.augment.brightness = 0.4
    c.augment.contrast = 0.4
    c.augment.saturation = 0.2
    c.augment.hue = 0.1
    c.augment.gray_prob = 0.2
    c.augment.blur_prob = 0.5
    c.augment.solarize_prob = 0.2
    c.augment.global_crop_scale = (0.3, 1.0)
    c.augment.local_crop_scale = (0.05, 0.3)
    c.augment.num_local_crops = 6
    return c


def get_config(arg=None):
    c = lejepa_views(cifar10_preset(pretrain_defaults()))
    c.augment.local_crop_size = 16
    c.method = method_config(
        "lejepa", lamb=0.05, num_slices=256, proj_hidden_dim=2048, proj_dim=128, proj_layers=3
    )
    c.optim.update(name="adamw", base_learning_rate=5e-4, lr_scaling="none", weight_decay=5e-4)
    c.schedule.end_lr_factor = 1e-3
    if arg == "runlocal":
        c.augment.local_crop_size = 8
    return finish(c, arg)
