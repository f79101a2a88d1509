"""W-MSE 2 (Ermolov et al., 2021), ResNet-18 (CIFAR stem) on CIFAR-10.

The authors' README command for W-MSE 2 on CIFAR-10: 1000 epochs, Adam at lr 3e-3, a
64-dimensional embedding (1024 hidden), whitening sub-batches of 128 (w_iter 1, eps 0);
the batch (256) is their cfg.py default in the version read. Views: SimCLR's. The paper's
CIFAR-10 linear accuracy is unverified here.

  python launch/pretrain.py --config configs/wmse_cifar10.py --workdir runs/wmse_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/wmse_cifar10.py:runlocal (sub-batches
of 32, a 16-dimensional embedding: whitening needs w_size > proj_dim).
"""

from ssl_jax.config import cifar10_preset, finish, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "simclr"
    c.augment.blur_prob = 0.0
    c.method = method_config("wmse", w_size=128, w_iter=1, proj_hidden_dim=1024, proj_dim=64)
    c.optim.update(name="adamw", base_learning_rate=3e-3, weight_decay=1e-6)
    c.optim.lr_scaling = "none"
    if arg == "runlocal":
        c.method.update(w_size=32, proj_dim=16)
    return finish(c, arg)
