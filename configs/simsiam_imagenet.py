"""SimSiam, ResNet-50 on ImageNet (Chen & He, 2021).

Batch 512, SGD with momentum 0.9, lr 0.05 x batch/256, weight decay 1e-4, 100 epochs of
cosine decay, projector 2048 (3 layers), predictor 2048-512-2048, the predictor's lr not
decayed in the paper (here decayed with the rest: say so when comparing). The paper
reports 68.1% linear top-1 for 100 epochs (Table 4).

  python launch/pretrain.py --multihost --config configs/simsiam_imagenet.py --workdir DIR
Smoke test on the embedded digits: --config configs/simsiam_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=512)
    c.epochs = 100
    c.augment.recipe = "simclr"
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
    c.optim.base_learning_rate = 0.05
    c.optim.weight_decay = 1e-4
    c.schedule.warmup_epochs = 0
    return finish(c, arg)
