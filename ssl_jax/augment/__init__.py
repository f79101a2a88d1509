"""Pure, jittable image augmentations `op(images, key, **params)` and multi-view pipelines.

Images are floating NHWC batches in [0, 1]: float32, bfloat16 or float16, and every op returns
its input's dtype. The view pipelines take uint8, or floats in [0, 1], which they check where the
value is concrete (a traced input, under `jax.jit`, cannot be). Each batch op splits its one PRNG
key into per-example keys and vmaps, so example i depends only on image i and its key; a batch
split over devices, on Auto or Explicit mesh axes, gives one device's values.
"""

from ssl_jax.augment.blur import gaussian_blur, gaussian_kernel
from ssl_jax.augment.color import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    hsv_to_rgb,
    random_grayscale,
    rgb_to_hsv,
    solarize,
    to_grayscale,
)
from ssl_jax.augment.geometric import (
    center_crop_resize,
    random_horizontal_flip,
    random_resized_crop,
)
from ssl_jax.augment.mix import cutmix, cutmix_box_mask, mix_batch, mixup, one_hot_targets
from ssl_jax.augment.pipeline import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RECIPES,
    ViewSpec,
    apply_view,
    check_unit_range,
    eval_view,
    get_view_specs,
    make_multiview_fn,
    normalize,
    to_unit_float,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RECIPES",
    "ViewSpec",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "apply_view",
    "center_crop_resize",
    "check_unit_range",
    "color_jitter",
    "cutmix",
    "cutmix_box_mask",
    "eval_view",
    "gaussian_blur",
    "gaussian_kernel",
    "get_view_specs",
    "hsv_to_rgb",
    "make_multiview_fn",
    "mix_batch",
    "mixup",
    "normalize",
    "one_hot_targets",
    "random_grayscale",
    "random_horizontal_flip",
    "random_resized_crop",
    "rgb_to_hsv",
    "solarize",
    "to_grayscale",
    "to_unit_float",
]
