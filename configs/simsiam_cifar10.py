"""SimSiam, ResNet-18 (CIFAR stem) on CIFAR-10.

The paper's CIFAR setting (appendix D) as used by solo-learn: SGD with momentum 0.9, lr
0.05 x batch/256 (solo-learn: 0.5 at batch 256), weight decay 5e-4 (solo-learn 1e-5),
projector 2048 (3 layers, last BN without affine), predictor 2048-512-2048, 1000 epochs.
Here: solo-learn's values (lr 0.5, wd 1e-5). solo-learn reports about 90.5% linear top-1.

  python launch/pretrain.py --config configs/simsiam_cifar10.py --workdir runs/simsiam \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/simsiam_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "simclr"
    c.augment.blur_prob = 0.0
    c.augment.brightness = 0.4
    c.augment.contrast = 0.4
    c.augment.saturation = 0.4
    c.augment.hue = 0.1
    c.method = method_config(
        "simsiam",
        proj_hidden_dim=2048,
        proj_dim=2048,
        pred_hidden_dim=512,
    )
    c.optim.name = "sgd"
    c.optim.base_learning_rate = 0.5
    c.optim.weight_decay = 1e-5
    c.schedule.warmup_epochs = 10
    return finish(c, arg)
