"""MoCo v2, ResNet-50 on ImageNet (Chen et al., 2020, arXiv 2003.04297).

The authors' recipe: batch 256, SGD (momentum 0.9) with lr 0.03 x batch/256, weight decay
1e-4 on every parameter, 200 epochs with a cosine schedule and no warmup, MLP head
2048-2048-128 without BN, queue K = 65536, key-encoder momentum 0.999 (constant),
temperature 0.2, one-directional loss, views: random resized crop (0.2, 1) at 224 px,
jitter 0.4/0.4/0.4/0.1 with p 0.8, grayscale 0.2, blur 0.5, flip. The paper reports 67.5%
linear top-1 after 200 epochs and 71.1% after 800 (``--config.epochs=800``). Difference:
global BN in the key encoder instead of per-GPU shuffle-BN (see ``ssl_jax/methods/moco.py``).

  python launch/pretrain.py --multihost --config configs/mocov2_imagenet.py --workdir DIR \
    --config.data.tfds_data_dir=/path/to/tensorflow_datasets
Smoke test on the embedded digits: --config configs/mocov2_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=256)
    c.epochs = 200
    c.augment.recipe = "simclr"
    c.augment.crop_scale = (0.2, 1.0)
    c.augment.brightness = 0.4
    c.augment.contrast = 0.4
    c.augment.saturation = 0.4
    c.augment.hue = 0.1
    c.augment.blur_prob = 0.5
    c.method = method_config(
        "mocov2",
        temperature=0.2,
        proj_hidden_dim=2048,
        proj_dim=128,
        queue_length=65536,
        momentum=0.999,
        momentum_schedule="constant",
        final_momentum=1.0,
        symmetric=False,
    )
    c.optim.name = "sgd"
    c.optim.base_learning_rate = 0.03
    c.optim.weight_decay = 1e-4
    c.optim.momentum = 0.9
    c.optim.exclude_bias_and_norm = False
    c.schedule.warmup_epochs = 0.0
    return finish(c, arg)
