"""Every public function of ``ssl_jax.augment`` that takes a batch of images, as
``fn(images, key, targets)`` with fixed hyperparameters (``targets``: soft labels, for the mixes).

``FLOAT_CASES`` take float images in [0, 1] and return their dtype; ``VIEW_CASES`` take uint8
images and return float32 views. Shared by the sharding and dtype tests.
"""

import jax.numpy as jnp

from ssl_jax import augment
from ssl_jax.augment.multicrop import dino_multicrop, make_multicrop_fn

_FULL_VIEW = augment.ViewSpec(crop_size=4, blur_prob=0.5, solarize_prob=0.5)
_JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)

FLOAT_CASES = {
    "adjust_brightness": lambda x, k, t: augment.adjust_brightness(x, jnp.float32(1.3)),
    "adjust_contrast": lambda x, k, t: augment.adjust_contrast(x, jnp.float32(0.6)),
    "adjust_hue": lambda x, k, t: augment.adjust_hue(x, jnp.float32(0.1)),
    "adjust_saturation": lambda x, k, t: augment.adjust_saturation(x, jnp.float32(0.6)),
    "center_crop_resize": lambda x, k, t: augment.center_crop_resize(x, size=4),
    "color_jitter": lambda x, k, t: augment.color_jitter(x, k, **_JITTER),
    "cutmix": lambda x, k, t: augment.cutmix(x, t, k, alpha=1.0),
    "gaussian_blur": lambda x, k, t: augment.gaussian_blur(x, k, prob=0.5),
    "hsv_to_rgb": lambda x, k, t: augment.hsv_to_rgb(x),
    "mix_batch": lambda x, k, t: augment.mix_batch(x, t, k, mixup_alpha=1.0, cutmix_alpha=1.0),
    "mixup": lambda x, k, t: augment.mixup(x, t, k, alpha=1.0),
    "normalize": lambda x, k, t: augment.normalize(
        x, mean=augment.IMAGENET_MEAN, std=augment.IMAGENET_STD
    ),
    "random_grayscale": lambda x, k, t: augment.random_grayscale(x, k, prob=0.5),
    "random_horizontal_flip": lambda x, k, t: augment.random_horizontal_flip(x, k),
    "random_resized_crop": lambda x, k, t: augment.random_resized_crop(x, k, size=4),
    "rgb_to_hsv": lambda x, k, t: augment.rgb_to_hsv(x),
    "solarize": lambda x, k, t: augment.solarize(x, k, prob=0.5),
    "to_grayscale": lambda x, k, t: augment.to_grayscale(x),
}

# Every step in apply_view; crops and flips only in the pipelines built of it (faster to compile).
_CROP_FLIP = dict(jitter_prob=0.0, gray_prob=0.0, blur_prob=0.0, solarize_prob=0.0)

VIEW_CASES = {
    "apply_view": lambda x, k, t: augment.apply_view(x, k, _FULL_VIEW),
    "eval_view": lambda x, k, t: augment.eval_view(x, size=4),
    "make_multicrop_fn": lambda x, k, t: make_multicrop_fn(*dino_multicrop(4, 2, 2, **_CROP_FLIP))(
        x, k
    ),
    "make_multiview_fn": lambda x, k, t: augment.make_multiview_fn(
        augment.get_view_specs("byol", crop_size=4, **_CROP_FLIP)
    )(x, k),
    "to_unit_float": lambda x, k, t: augment.to_unit_float(x),
}

# Public names that are not functions of a batch of images.
NOT_IMAGE_FUNCTIONS = {
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RECIPES",
    "ViewSpec",
    "check_unit_range",
    "cutmix_box_mask",
    "gaussian_kernel",
    "get_view_specs",
    "one_hot_targets",
}
