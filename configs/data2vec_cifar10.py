"""data2vec 2.0, ViT-Tiny with 4 px patches on CIFAR-10 (64 patches of 32 px images).

configs/data2vec_imagenet.py scaled down: 8 masked copies per image, 80% masked, targets the
mean of the top 8 of 12 teacher blocks, a 5-layer decoder of width 192 (groups 16), EMA from
0.9998 to 0.99999, AdamW at 1e-4 x batch/256 with weight decay 0.05, 200 epochs. No CIFAR-10
number of the paper exists to compare with (unverified).

  python launch/pretrain.py --config configs/data2vec_cifar10.py --workdir runs/d2v_cifar10 \
    --config.data.name=npz --config.data.path=../shared/data/cifar10
Smoke test on the embedded digits: --config configs/data2vec_cifar10.py:runlocal
"""

from ssl_jax.config import cifar10_preset, finish, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(cifar10_preset(pretrain_defaults()))
    c.epochs = 200
    c.schedule.warmup_epochs = 10
    c.augment.crop_scale = (0.35, 1.0)
    c.model.backbone = "vit_tiny"
    c.model.patch_size = 4
    c.model.img_size = 32
    c.model.pool = "cls"
    c.method = method_config(
        "data2vec", num_masks=8, mask_ratio=0.8, top_k=8, decoder_dim=192, decoder_depth=5
    )
    c.optim.update(name="adamw", base_learning_rate=1e-4, weight_decay=0.05, b2=0.95)
    if arg == "runlocal":
        c.method.num_masks = 2
    return finish(c, arg)
