"""SimCLR, ResNet-18 (CIFAR stem) on CIFAR-10.

Recipe of solo-learn's CIFAR SimCLR (LARS, lr 0.4 x batch/256, weight decay 1e-5,
temperature 0.2, 2048-256 projector, batch 256, 1000 epochs, 10 warmup epochs), views
as in SimCLR's CIFAR experiments (no blur). solo-learn reports about 90.7% linear top-1
for this recipe; the SimCLR paper reports 94.0% with a ResNet-50 (1000 epochs, t=0.5).

Launch (downloads CIFAR-10 through tensorflow-datasets):
  python launch/pretrain.py --config configs/simclr_cifar10.py --workdir runs/simclr_cifar10
The local copy in ../shared/data instead:
  python launch/pretrain.py --config configs/simclr_cifar10.py --workdir runs/simclr_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test: --config configs/simclr_cifar10.py:runlocal
"""

from ssl_jax.config import pretrain_defaults


def get_config(arg=None):
    c = pretrain_defaults()
    c.epochs = 1000
    c.data.name = "tfds"
    c.data.tfds_name = "cifar10"
    c.data.batch_size = 256
    c.augment.recipe = "simclr"
    c.augment.crop_size = 32
    c.augment.blur_prob = 0.0
    c.model.backbone = "resnet18"
    c.model.stem = "cifar"
    c.model.width = 64
    c.method.temperature = 0.2
    c.method.proj_hidden_dim = 2048
    c.method.proj_dim = 256
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.4
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
        c.method.proj_dim = 64
        c.ckpt.every_steps = 10
        c.log.every_steps = 5
        c.evals.knn.every_steps = 0
    elif arg is not None:
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c.lock()
    return c
