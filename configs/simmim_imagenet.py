"""SimMIM, ViT-B/16 on ImageNet: the authors' ViT-B pretraining recipe (Xie et al., 2022).

The authors' simmim_pretrain__vit_base__img224__800ep.yaml: 224 px, random masking of 32 px
mask patches at ratio 0.6, a linear head to pixels, L1 on the masked patches, 800 epochs
with 10 warm-up epochs, AdamW with weight decay 0.05 and base lr 1e-4, drop path 0.1, batch
2048 (their command: 128 per GPU on 16 GPUs). Their code scales the lr by batch/512 (as read,
unverified here), so 5e-5 per 256 images here; their ViT schedule is a step decay (x0.1 at
epoch 700), this config's is the library's cosine. Views: random resized crops of scale
(0.67, 1) and flips, as their SimMIMTransform. Their README reports 83.8% top-1 after
fine-tuning ViT-B at 224 px. Not run here.

  python launch/pretrain.py --config configs/simmim_imagenet.py --workdir runs/simmim_imagenet
Smoke test on the embedded digits: --config configs/simmim_imagenet.py:runlocal
"""

from ssl_jax.config import finish, imagenet_preset, pretext_preset, pretrain_defaults
from ssl_jax.methods import method_config


def get_config(arg=None):
    c = pretext_preset(imagenet_preset(pretrain_defaults(), batch_size=2048))
    c.epochs = 800
    c.schedule.warmup_epochs = 10
    c.augment.crop_scale = (0.67, 1.0)
    c.model.backbone = "vit_base"
    c.model.patch_size = 16
    c.model.img_size = 224
    c.model.pool = "cls"
    c.model.drop_path_rate = 0.1
    c.method = method_config("simmim", mask_ratio=0.6, mask_patch_size=32)
    c.optim.update(name="adamw", base_learning_rate=5e-5, weight_decay=0.05)
    if arg == "runlocal":  # 16 px images: 8 px mask patches of the 4 px patches
        c.method.mask_patch_size = 8
    return finish(c, arg)
