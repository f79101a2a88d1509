"""SwAV, ResNet-50 on ImageNet (Caron et al., 2020).

The authors' 800-epoch multi-crop run (scripts/swav_800ep_pretrain.sh): batch 4096, LARS
with lr 4.8 (0.3 x batch/256; 10 warmup epochs, cosine to 0.0048), weight decay 1e-6,
projector 2048-128 (BN, ReLU), 3000 prototypes frozen for the first 313 iterations,
temperature 0.1, Sinkhorn epsilon 0.05 with 3 iterations; 2 crops of 224 px, scale
(0.14, 1), and 6 of 96 px, scale (0.05, 0.14), SimCLR's colour distortion and blur with prob
0.5. The paper reports 75.3% linear top-1. No queue at this batch size
(--queue_length 0 in the authors' script); their batch-256 runs (scripts/swav_*_bs256_*.sh)
add a queue of 3840 from epoch 15: --config.data.batch_size=256
--config.method.queue_length=3840 (and their lr 0.6, 5005 frozen-prototype iterations, no
warm-up). The authors' warm-up starts at lr 0.3, this one at 0. Images are resized to
256 x 256 on the host before cropping. The kNN monitor is off, as in every
ImageNet config (--config.evals.knn.every_steps=N turns it on). Schedules given in epochs
are converted to steps from the batch size.

  python launch/pretrain.py --multihost --config configs/swav_imagenet.py --workdir DIR \
    --config.data.tfds_data_dir=/path/to/tensorflow_datasets
Smoke test on the embedded digits: --config configs/swav_imagenet.py:runlocal
"""

from ssl_jax.config import epoch_steps, finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config

TRAIN_IMAGES = 1_281_167


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=4096)
    c.epochs = 800
    c.augment.recipe = "swav"
    c.augment.global_crop_scale = (0.14, 1.0)
    c.augment.local_crop_scale = (0.05, 0.14)
    c.augment.local_crop_size = 96
    c.augment.num_local_crops = 6
    c.method = method_config(
        "swav",
        proj_hidden_dim=2048,
        proj_dim=128,
        num_prototypes=3000,
        temperature=0.1,
        sinkhorn_epsilon=0.05,
        sinkhorn_iters=3,
        queue_length=0,
        queue_start_step=epoch_steps(c, 15, TRAIN_IMAGES),  # used once queue_length > 0
        freeze_prototypes_steps=313,
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.3
    c.optim.weight_decay = 1e-6
    c.schedule.warmup_epochs = 10
    c.schedule.end_lr_factor = 0.001
    if arg == "runlocal":
        c.augment.local_crop_size = 8
        c.method.num_prototypes = 30
        c.method.queue_start_step = 5
        c.method.freeze_prototypes_steps = 2
    return finish(c, arg)
