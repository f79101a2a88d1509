"""NNCLR, ResNet-50 on ImageNet (Dwibedi et al., 2021, arXiv 2104.14548).

The paper's recipe: batch 4096, LARS with lr 0.3 x batch/256 (4.8) and weight decay 1e-6,
1000 epochs with 10 warmup epochs and cosine decay, projector 2048-2048-256 (BatchNorm after
each layer), predictor 4096-256, a support set of 98,304 projections, temperature 0.1, BYOL's
views at 224 px (the optimizer and schedule as SimCLR's, which the paper builds on; not yet
checked line by line against the paper's appendix). The paper reports 75.6% linear top-1
(its abstract; ResNet-50, 1000 epochs).

  python launch/pretrain.py --multihost --config configs/nnclr_imagenet.py --workdir DIR \
    --config.data.tfds_data_dir=/path/to/tensorflow_datasets
Smoke test on the embedded digits: --config configs/nnclr_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = imagenet_preset(pretrain_defaults(), batch_size=4096)
    c.epochs = 1000
    c.augment.recipe = "byol"
    c.method = method_config(
        "nnclr",
        temperature=0.1,
        proj_hidden_dim=2048,
        proj_dim=256,
        pred_hidden_dim=4096,
        queue_length=98304,
    )
    c.optim.name = "lars"
    c.optim.base_learning_rate = 0.3
    c.optim.weight_decay = 1e-6
    c.schedule.warmup_epochs = 10
    return finish(c, arg)
