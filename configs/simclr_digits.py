"""SimCLR on the embedded digits dataset: the quickstart (no download, a few CPU minutes).

scikit-learn's 1,797 real 8x8 handwritten digits (1,437 train / 360 test), upscaled to
16x16 RGB, a width-16 CIFAR-stem ResNet-18, AdamW. Views: random resized crop (scale
0.4-1), brightness/contrast jitter, no flip (digits are not mirror symmetric), blur.

  python launch/pretrain.py --config configs/simclr_digits.py --workdir runs/digits
"""

from ssl_jax.config import finish, pretrain_defaults


def get_config(arg=None):
    c = pretrain_defaults()
    c.epochs = 60
    c.data.name = "digits"
    c.data.image_size = 16
    c.data.batch_size = 256
    c.augment.recipe = "simclr"
    c.augment.crop_size = 16
    c.augment.crop_scale = (0.4, 1.0)
    c.augment.flip_prob = 0.0
    c.augment.saturation = 0.0
    c.augment.hue = 0.0
    c.augment.gray_prob = 0.0
    c.augment.blur_prob = 0.3
    c.augment.mean = (0.5, 0.5, 0.5)
    c.augment.std = (0.5, 0.5, 0.5)
    c.model.backbone = "resnet18"
    c.model.stem = "cifar"
    c.model.width = 16
    c.method.temperature = 0.2
    c.method.proj_hidden_dim = 256
    c.method.proj_dim = 64
    c.optim.name = "adamw"
    c.optim.base_learning_rate = 2e-3
    c.optim.lr_scaling = "none"
    c.optim.weight_decay = 1e-4
    c.schedule.warmup_epochs = 5
    c.ckpt.every_steps = 100
    c.log.every_steps = 10
    c.evals.knn.every_steps = 0
    if arg == "runlocal":  # smaller than the shared runlocal: the launch tests run it often
        c.method.update(proj_hidden_dim=32, proj_dim=16)
    return finish(c, arg, total_steps=6, batch_size=32, width=8)
