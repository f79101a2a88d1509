"""BYOL, ResNet-50 on ImageNet (Grill et al., 2020).

Batch 4096, LARS with lr 0.2 x batch/256 and weight decay 1.5e-6 (biases and BN excluded),
1000 epochs with 10 warmup epochs, projector 4096-256, predictor 4096-256, target momentum
0.996 -> 1 (cosine), BYOL's asymmetric views at 224 px. The paper reports 74.3% linear
top-1 (Table 1).

  python launch/pretrain.py --multihost --config configs/byol_imagenet.py --workdir DIR
Smoke test on the embedded digits: --config configs/byol_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=4096)
    c.epochs = 1000
    c.augment.recipe = "byol"
    c.method = method_config(
        "byol",
        proj_hidden_dim=4096,
        proj_dim=256,
        pred_hidden_dim=4096,
        base_momentum=0.996,
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.2
    c.optim.weight_decay = 1.5e-6
    c.schedule.warmup_epochs = 10
    return finish(c, arg)
