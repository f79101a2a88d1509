"""VICReg, ResNet-50 on ImageNet (Bardes et al., 2022).

Batch 2048, LARS with lr 0.2 x batch/256 (base 0.2 per 256 as the authors' `--base-lr`),
weight decay 1e-6, 1000 epochs with 10 warmup epochs, expander 8192-8192-8192,
coefficients 25/25/1, BYOL's views. The paper reports 73.2% linear top-1.

  python launch/pretrain.py --multihost --config configs/vicreg_imagenet.py --workdir DIR
Smoke test on the embedded digits: --config configs/vicreg_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=2048)
    c.epochs = 1000
    c.augment.recipe = "byol"
    c.method = method_config(
        "vicreg",
        proj_hidden_dim=8192,
        proj_dim=8192,
        sim_coeff=25.0,
        std_coeff=25.0,
        cov_coeff=1.0,
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.2
    c.optim.weight_decay = 1e-6
    c.schedule.warmup_epochs = 10
    return finish(c, arg)
