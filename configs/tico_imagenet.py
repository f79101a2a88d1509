"""TiCo (Zhu et al., 2022), ResNet-50 on ImageNet.

beta 0.9, rho 20, a 4096-256 projector (lightly's TiCoProjectionHead), BYOL's views, batch
2048, LARS with lr 0.2 x batch/256 and weight decay 1.5e-6 (Barlow Twins' recipe, to which
the paper compares TiCo), 1000 epochs with 10 warmup epochs. The paper's ImageNet linear
top-1 and its exact optimiser settings are unverified here; lightly's benchmark adds a
momentum encoder, not implemented (ssl_jax/methods/tico.py).

  python launch/pretrain.py --multihost --config configs/tico_imagenet.py --workdir DIR
Smoke test on the embedded digits: --config configs/tico_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=2048)
    c.epochs = 1000
    c.augment.recipe = "byol"
    c.method = method_config("tico", beta=0.9, rho=20.0, proj_hidden_dim=4096, proj_dim=256)
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.2
    c.optim.weight_decay = 1.5e-6
    c.schedule.warmup_epochs = 10
    return finish(c, arg)
