"""SimCLR, ResNet-50 on ImageNet (Chen et al., 2020).

Batch 4096, LARS with lr 0.3 x batch/256 and weight decay 1e-6, temperature 0.1, 2048-128
projector, 1000 epochs with 10 warmup epochs, SimCLR views with blur at 224 px. The paper
reports 69.3% linear top-1 for this recipe (Table 6, ResNet-50 1x).

  python launch/pretrain.py --multihost --config configs/simclr_imagenet.py --workdir DIR \
    --config.data.tfds_data_dir=/path/to/tensorflow_datasets
Smoke test on the embedded digits: --config configs/simclr_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=4096)
    c.epochs = 1000
    c.augment.recipe = "simclr"
    c.method = method_config(
        "simclr",
        temperature=0.1,
        proj_hidden_dim=2048,
        proj_dim=128,
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.3
    c.optim.weight_decay = 1e-6
    c.schedule.warmup_epochs = 10
    return finish(c, arg)
