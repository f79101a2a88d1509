"""MMCR (Yerxa et al., 2023), ResNet-50 on ImageNet, two views per image.

The authors' ImageNet defaults (pretrain_imagenet.py): batch 2048, 8 views, lr 0.8, 100
epochs, lambda 0, and the ``MMCR_Momentum`` objective (a momentum encoder, tau 0.99); their
README names 2 views as a variant (``--n_aug 2``). This config is the 2-view, no-momentum
form this library implements (ssl_jax/methods/mmcr.py) with their batch, lr (LARS, 0.8 x
batch/2048, i.e. base 0.1 per 256) and epochs; the optimiser type and projector are
unverified. The paper's ImageNet linear accuracy is unverified here.

  python launch/pretrain.py --multihost --config configs/mmcr_imagenet.py --workdir DIR
Smoke test on the embedded digits: --config configs/mmcr_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=2048)
    c.epochs = 100
    c.augment.recipe = "byol"
    c.method = method_config("mmcr", lambda_=0.0, proj_hidden_dim=8192, proj_dim=512)
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.1
    c.optim.weight_decay = 1e-6
    c.schedule.warmup_epochs = 10
    return finish(c, arg)
