"""SwAV, ResNet-18 (CIFAR stem) on CIFAR-10.

solo-learn's CIFAR recipe (scripts/pretrain/cifar/swav.yaml): LARS, lr 0.6 x batch/256,
weight decay 1e-6, batch 256, 1000 epochs, 10 warmup epochs, projector 2048-128 (BN, ReLU),
3000 prototypes frozen for the first 2 epochs, temperature 0.1, Sinkhorn epsilon 0.05 with 3
iterations, a queue of 3840 projections from epoch 50 on; 2 crops of 32 px, scale
(0.08, 1), SimCLR's colour distortion and blur with prob 0.5 (solo-learn keeps the blur for
CIFAR). solo-learn reports 89.17% linear top-1. Add local crops with
--config.augment.num_local_crops=N --config.augment.local_crop_size=16. Schedules given in
epochs are converted to steps from the batch size. The kNN monitor (every 10,000
steps) embeds images at the global-crop size.

  python launch/pretrain.py --config configs/swav_cifar10.py --workdir runs/swav_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/swav_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, epoch_steps, finish, pretrain_defaults
from ssl_jax.methods import method_config

TRAIN_IMAGES = 50_000


def get_config(arg=None):
    c = cifar10_preset(pretrain_defaults())
    c.augment.recipe = "swav"
    c.augment.global_crop_scale = (0.08, 1.0)
    c.augment.local_crop_scale = (0.05, 0.14)
    c.augment.local_crop_size = 16
    c.augment.num_local_crops = 0
    c.method = method_config(
        "swav",
        proj_hidden_dim=2048,
        proj_dim=128,
        num_prototypes=3000,
        temperature=0.1,
        sinkhorn_epsilon=0.05,
        sinkhorn_iters=3,
        queue_length=3840,
        queue_start_step=epoch_steps(c, 50, TRAIN_IMAGES),
        freeze_prototypes_steps=epoch_steps(c, 2, TRAIN_IMAGES),
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.6
    c.optim.weight_decay = 1e-6
    if arg == "runlocal":
        c.augment.num_local_crops = 2
        c.augment.local_crop_size = 8
        c.method.num_prototypes = 30
        c.method.queue_start_step = 5
        c.method.freeze_prototypes_steps = 2
    return finish(c, arg)
