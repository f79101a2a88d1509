"""Barlow Twins, ResNet-50 on ImageNet (Zbontar et al., 2021).

Batch 2048, LARS (biases and BN excluded) with lr 0.2 x batch/256 for weights (the
authors use 0.0048 for biases/BN; a single rate here), weight decay 1.5e-6, 1000 epochs
with 10 warmup epochs, projector 8192-8192-8192, lambda 0.0051, BYOL's views. The paper
reports 73.2% linear top-1.

  python launch/pretrain.py --multihost --config configs/barlow_twins_imagenet.py --workdir DIR
Smoke test on the embedded digits: --config configs/barlow_twins_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=2048)
    c.epochs = 1000
    c.augment.recipe = "byol"
    c.method = method_config(
        "barlow_twins",
        proj_hidden_dim=8192,
        proj_dim=8192,
        lambda_=0.0051,
        scale_loss=1.0,
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.2
    c.optim.weight_decay = 1.5e-6
    c.schedule.warmup_epochs = 10
    return finish(c, arg)
