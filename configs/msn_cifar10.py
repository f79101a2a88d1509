"""MSN, ViT-Tiny with 4 px patches on CIFAR-10 (the ImageNet recipe, configs/msn_imagenet.py,
at 32 px).

2 global crops of 32 px (target view and masked anchor, 15% of its 64 patches dropped) and 6
local crops of 16 px (focal views), 1024 prototypes of width 256, temperature 0.1, sharpening
0.25, Sinkhorn, me-max weight 1, AdamW at 1e-3 x batch/1024 with weight decay 0.04, 300
epochs, target momentum 0.996 -> 1 linearly; the export is the target network. The paper
reports no CIFAR-10 number; none is measured here. `--config.method.prior_exponent=0.25`
gives PMSN's power-law prior (Assran et al., 2023, "The Hidden Uniform Cluster Prior").

  python launch/pretrain.py --config configs/msn_cifar10.py --workdir runs/msn_cifar10 \\
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/msn_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.epochs = 300
    c.schedule.warmup_epochs = 15
    c.augment.recipe = "dino"
    c.augment.global_crop_scale = (0.3, 1.0)
    c.augment.local_crop_scale = (0.05, 0.3)
    c.augment.local_crop_size = 16
    c.augment.num_local_crops = 6
    c.model.backbone = "vit_tiny"
    c.model.patch_size = 4
    c.model.img_size = 32
    c.method = method_config("msn", proj_hidden_dim=2048, proj_dim=256, num_prototypes=1024)
    c.optim.update(name="adamw", base_learning_rate=1e-3 * 256 / 1024, weight_decay=0.04)
    c.export.network = "target"
    if arg == "runlocal":
        c.augment.local_crop_size = 8
        c.method.num_prototypes = 64
    return finish(c, arg)
