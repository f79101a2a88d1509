"""W-MSE 2 (Ermolov et al., 2021), ResNet-50 on ImageNet.

The authors' README gives no ImageNet-1k command; this config takes their Tiny ImageNet /
STL-10 W-MSE 2 settings (a 128-dimensional embedding, whitening sub-batches of 256, w_iter
4, Adam at lr 2e-3) with batch 1024 and 400 epochs. Unverified: the paper's ImageNet
results and recipe.

  python launch/pretrain.py --multihost --config configs/wmse_imagenet.py --workdir DIR
Smoke test on the embedded digits: --config configs/wmse_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=1024)
    c.epochs = 400
    c.augment.recipe = "simclr"
    c.method = method_config("wmse", w_size=256, w_iter=4, proj_hidden_dim=1024, proj_dim=128)
    c.optim.update(name="adamw", base_learning_rate=2e-3, weight_decay=1e-6)
    c.optim.lr_scaling = "none"
    c.schedule.warmup_epochs = 10
    if arg == "runlocal":
        c.method.update(w_size=32, proj_dim=16)
    return finish(c, arg)
