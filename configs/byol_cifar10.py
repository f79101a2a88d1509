"""BYOL, ResNet-18 (CIFAR stem) on CIFAR-10.

solo-learn's CIFAR recipe: LARS, lr 1.0 x batch/256, weight decay 1e-5, batch 256, 1000
epochs, 10 warmup epochs, projector 4096-256, predictor 4096-256, target momentum 0.99 -> 1
(cosine), BYOL's asymmetric views (blur 1.0/0.1, solarize 0/0.2) at 32 px. solo-learn
reports about 92.6% linear top-1 for this recipe.

  python launch/pretrain.py --config configs/byol_cifar10.py --workdir runs/byol_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test: --config configs/byol_cifar10.py:runlocal
"""

from ssl_jax.config import pretrain_defaults


def get_config(arg=None):
    c = pretrain_defaults()
    c.epochs = 1000
    c.data.name = "tfds"
    c.data.tfds_name = "cifar10"
    c.data.batch_size = 256
    c.augment.recipe = "byol"
    c.augment.crop_size = 32
    c.model.backbone = "resnet18"
    c.model.stem = "cifar"
    c.model.width = 64
    c.method.name = "byol"
    c.method.proj_hidden_dim = 4096
    c.method.proj_dim = 256
    c.method.pred_hidden_dim = 4096
    c.method.base_momentum = 0.99
    c.optim.name = "lars"
    c.optim.base_learning_rate = 1.0
    c.optim.weight_decay = 1e-5
    c.schedule.warmup_epochs = 10
    c.ckpt.every_steps = 2000
    c.log.every_steps = 100
    c.evals.knn.every_steps = 10000
    if arg == "runlocal":
        c.total_steps = 20
        c.data.batch_size = 64
        c.model.width = 16
        c.method.proj_hidden_dim = 256
        c.method.pred_hidden_dim = 256
        c.method.proj_dim = 64
        c.ckpt.every_steps = 10
        c.log.every_steps = 5
        c.evals.knn.every_steps = 0
    elif arg is not None:
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c.lock()
    return c
