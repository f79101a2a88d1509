"""Fine-tune a pretrained encoder end to end with a linear head (SimCLR's semi-supervised
protocol), or a random initialisation of its architecture (the from-scratch baseline).

  python launch/finetune.py --config configs/finetune.py \
    --config.pretrained=runs/simclr_cifar10 --workdir runs/simclr_cifar10/finetune_10pct
  # 1% of the labels (SimCLR fine-tunes 60 epochs on 1%, 30 on 10%)
  python launch/finetune.py --config configs/finetune.py --config.data.label_fraction=0.01 \
    --config.epochs=60 --config.pretrained=runs/simclr_cifar10 --workdir runs/ft_1pct
  # the baseline: the same architecture from scratch, on the same labelled subset
  python launch/finetune.py --config configs/finetune.py --config.random_init=True \
    --config.pretrained=runs/simclr_cifar10 --workdir runs/scratch_10pct
  # a smoke test: 20 steps (on the embedded digits, after a runlocal pretraining)
  python launch/finetune.py --config configs/finetune.py:runlocal \
    --config.pretrained=/tmp/smoke --workdir /tmp/smoke_finetune

Recipe: SimCLR (Chen et al., 2020, appendix B.5): SGD with Nesterov momentum 0.9, learning
rate 0.05 x batch / 256 with no warmup (cosine decay, as its code), no weight decay, Inception
crop and flip only, a zero-initialised linear head, BatchNorm in train mode; 30 epochs on 10%
of the labels. One change: the head normalises the pooled features with an affine-free
BatchNorm first (``finetune.head=bn_linear``, MAE's head), because encoders' feature norms
differ by orders of magnitude and SimCLR's plain head (``finetune.head=linear``) diverged on
the largest (docs/results.md, label efficiency). The labelled subset is class-balanced and
seeded by ``seed`` (the same images for every encoder); 10% of it is held out to choose the
step, which is then evaluated on test. SimCLR reports 65.6% / 75.5% ImageNet top-1 with 1% /
10% labels (ResNet-50); our CIFAR-10 numbers of this config are in docs/results.md. For MAE's
ViT fine-tuning set
``optim.name=adamw``, ``optim.base_learning_rate=1e-3``, ``optim.weight_decay=0.05``,
``optim.layer_decay=0.75``, ``schedule.warmup_epochs=5``, ``finetune.drop_path_rate=0.1``,
``finetune.label_smoothing=0.1``, ``finetune.mixup_alpha=0.8``, ``finetune.cutmix_alpha=1.0``.

As in the probe programs, the data is the dataset the export of ``pretrained`` was trained on
(its spec records it; no pretraining config is read) unless ``--config.data.name=...`` names
another (e.g. ``--config.data.name=npz --config.data.path=../shared/data/cifar10``); other
``--config.data.*`` fields alone change the export's dataset field by field (its
``tfds_data_dir`` on this host, ``image_size``). An export written before specs recorded the
dataset needs ``--config.data.name``.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from ssl_jax.config import data_defaults


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0  # the label subset, the validation split, the head init and the data order
    c.pretrained = ""  # a pretraining workdir: its encoder export is the starting point
    c.step = placeholder(int)  # which checkpoint of it; None = newest
    c.random_init = False  # the same architecture freshly initialised (seed): the baseline
    c.epochs = 30  # epochs of the labelled training images
    c.total_steps = placeholder(int)  # derived from epochs when unset
    c.data = data_defaults(name="", batch_size=256)  # name "": the export's dataset
    c.data.label_fraction = 0.1  # class-balanced fraction of the training labels, in (0, 1]
    c.data.val_fraction = 0.1  # of the labelled subset, held out to choose the step (0: last)
    c.finetune = ml_collections.ConfigDict(
        dict(
            head="bn_linear",  # affine-free BatchNorm + zero-init linear; linear: SimCLR's
            label_smoothing=0.0,
            mixup_alpha=0.0,  # 0 = off
            cutmix_alpha=0.0,  # 0 = off; both on: CutMix for a batch with mix_switch_prob
            mix_switch_prob=0.5,
            crop_scale=(0.08, 1.0),  # Inception-style random resized crop, then flip
            crop_ratio=(3 / 4, 4 / 3),
            flip_prob=0.5,
            drop_path_rate=0.0,  # ViT stochastic depth of the last block (MAE ViT-B: 0.1)
            eval_every_steps=100,  # validation every N steps and at the last
            eval_batch_size=512,
        )
    )
    c.optim = ml_collections.ConfigDict(
        dict(
            name="sgd",  # sgd | adamw | lars (ssl_jax.optim)
            nesterov=True,
            base_learning_rate=0.05,
            lr_scaling="linear",  # lr = base * batch / 256
            weight_decay=0.0,
            momentum=0.9,
            b1=0.9,
            b2=0.999,
            trust_coefficient=0.001,
            trust_clip=False,
            exclude_bias_and_norm=True,
            grad_clip_norm=placeholder(float),
            # lr_mult / weight_decay per part (backbone, head), kind (weight, norm_bias).
            param_groups={
                group: dict(lr_mult=placeholder(float), weight_decay=placeholder(float))
                for group in ("backbone", "head", "weight", "norm_bias")
            },
            layer_decay=placeholder(float),  # ViT backbone: lr * decay ** (depth + 1 - layer)
        )
    )
    c.schedule = ml_collections.ConfigDict(
        dict(name="warmup_cosine", warmup_epochs=0.0, end_lr_factor=0.0)
    )
    c.ckpt = ml_collections.ConfigDict(dict(every_steps=500, keep=2, async_save=True))
    c.log = ml_collections.ConfigDict(dict(every_steps=20, tensorboard=False, progress=True))
    # num_devices -1: every device; fsdp: the training state split over the devices (arrays of
    # at least fsdp_min_size elements), as in pretraining (docs/big-models.md).
    c.mesh = ml_collections.ConfigDict(dict(num_devices=-1, fsdp=False, fsdp_min_size=2**14))
    if arg == "runlocal":
        c.total_steps = 20
        c.data.batch_size = 64
        c.finetune.eval_every_steps = 5
        c.finetune.eval_batch_size = 128
        c.ckpt.every_steps = 10
        c.log.every_steps = 5
    elif arg is not None:
        raise ValueError(f"Unknown config variant {arg!r}; valid: runlocal.")
    c.lock()
    return c
