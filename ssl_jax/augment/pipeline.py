"""Multi-view augmentation pipelines: view specifications, named recipes, view functions.

A view is uint8 -> [0, 1] -> random resized crop -> flip -> color jitter -> grayscale ->
blur -> solarize -> (x - mean) / std, the order of SimCLR and BYOL. Everything runs on device
inside the jitted train step; the host delivers uint8 batches only.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.augment._batch import check_interval, check_nonnegative, check_prob, check_size
from ssl_jax.augment.blur import gaussian_blur
from ssl_jax.augment.color import color_jitter, random_grayscale, solarize
from ssl_jax.augment.geometric import (
    center_crop_resize,
    random_horizontal_flip,
    random_resized_crop,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """Hyperparameters of one augmented view; see `apply_view` for the order of the steps.

    Sequences are stored as tuples of floats, so a spec built from a config is hashable.
    """

    crop_size: int
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    jitter_prob: float = 0.8
    gray_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        check_size(self.crop_size, name="crop_size")
        for name in ("flip_prob", "jitter_prob", "gray_prob", "blur_prob", "solarize_prob"):
            check_prob(getattr(self, name), name=name)
        for name in ("brightness", "contrast", "saturation", "hue"):
            check_nonnegative(getattr(self, name), name=name)
        if self.hue > 0.5:
            raise ValueError(f"hue must be in [0, 0.5]; got {self.hue!r}.")
        object.__setattr__(
            self, "crop_scale", check_interval(self.crop_scale, name="crop_scale", high=1.0)
        )
        object.__setattr__(self, "crop_ratio", check_interval(self.crop_ratio, name="crop_ratio"))
        object.__setattr__(self, "blur_sigma", check_interval(self.blur_sigma, name="blur_sigma"))
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3 or (name == "std" and min(value) <= 0):
                raise ValueError(f"{name} must be 3 numbers (one per RGB channel); got {value}.")
            object.__setattr__(self, name, value)


def check_unit_range(images: jax.typing.ArrayLike, *, name: str = "images") -> None:
    """Raises ``ValueError`` if floating ``images`` hold a value outside [0, 1].

    Catches 0..255 images passed as floats, which the clipping augmentations and the encoders
    would otherwise take silently. Only a concrete value can be read: a traced one (inside
    ``jax.jit``, ``vmap`` or ``grad``) passes unchecked, so a jitted caller checks its own
    inputs before the call. Integer and empty inputs pass (their dtype says their range).
    """
    if isinstance(images, jax.core.Tracer) or not jnp.issubdtype(
        jnp.result_type(images), jnp.floating
    ):
        return
    xp = jnp if isinstance(images, jax.Array) else np
    values = images if xp is jnp else np.asarray(images)
    if values.size == 0:
        return
    low, high = float(xp.min(values)), float(xp.max(values))
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{name} are floating point with values in [{low:g}, {high:g}], expected [0, 1]; "
            "divide 0..255 images by 255, or pass them as uint8."
        )


def to_unit_float(images: jax.typing.ArrayLike) -> jax.Array:
    """Converts uint8 images to float32 in [0, 1] (x / 255); float images, which must already be
    in [0, 1], are cast to float32.

    A concrete float input outside [0, 1] raises ``ValueError`` (:func:`check_unit_range`); a
    traced one, under ``jax.jit``, cannot be checked: jitted callers pass uint8 or check first.
    """
    check_unit_range(images)
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    if jnp.issubdtype(images.dtype, jnp.floating):
        return images.astype(jnp.float32)
    raise ValueError(
        f"images must be uint8 in [0, 255] or floating point in [0, 1]; got dtype {images.dtype}."
    )


def normalize(
    images: jax.typing.ArrayLike, *, mean: Sequence[float], std: Sequence[float]
) -> jax.Array:
    """Standardizes each channel: (x - mean) / std over the last (channel) axis."""
    images = jnp.asarray(images)
    mean = jnp.asarray(mean, images.dtype)
    std = jnp.asarray(std, images.dtype)
    if mean.shape != (images.shape[-1],) or std.shape != (images.shape[-1],):
        raise ValueError(
            f"mean and std need one value per channel ({images.shape[-1]}); got shapes "
            f"{mean.shape} and {std.shape}."
        )
    return (images - mean) / std


def apply_view(images: jax.typing.ArrayLike, key: jax.Array, spec: ViewSpec) -> jax.Array:
    """Makes one augmented, normalized float32 view (N, crop, crop, 3) of (N, H, W, 3) uint8 images.

    Float images must already be in [0, 1]: checked when concrete, unchecked under `jax.jit`
    (see `to_unit_float`). Steps: to [0, 1], `random_resized_crop`, `random_horizontal_flip`,
    `color_jitter`, `random_grayscale`, `gaussian_blur` (default kernel ~10% of the crop side),
    `solarize`, `normalize`. Each step gets its own key from one split of `key`.
    """
    x = to_unit_float(images)
    k_crop, k_flip, k_jitter, k_gray, k_blur, k_solarize = jax.random.split(key, 6)
    x = random_resized_crop(
        x, k_crop, size=spec.crop_size, scale=spec.crop_scale, ratio=spec.crop_ratio
    )
    x = random_horizontal_flip(x, k_flip, prob=spec.flip_prob)
    x = color_jitter(
        x,
        k_jitter,
        brightness=spec.brightness,
        contrast=spec.contrast,
        saturation=spec.saturation,
        hue=spec.hue,
        prob=spec.jitter_prob,
    )
    x = random_grayscale(x, k_gray, prob=spec.gray_prob)
    x = gaussian_blur(x, k_blur, prob=spec.blur_prob, sigma=spec.blur_sigma)
    x = solarize(x, k_solarize, prob=spec.solarize_prob)
    return normalize(x, mean=spec.mean, std=spec.std)


def make_multiview_fn(
    specs: Sequence[ViewSpec],
) -> Callable[[jax.typing.ArrayLike, jax.Array], tuple[jax.Array, ...]]:
    """Returns fn(images_uint8, key) -> one `apply_view` output per spec, one key split per view.

    Float images must be in [0, 1] (not 0..255): `to_unit_float` checks a concrete input, but a
    jitted caller's images are traced and cannot be checked, so pass uint8 there.
    """
    specs = tuple(specs)
    if not specs or not all(isinstance(s, ViewSpec) for s in specs):
        raise ValueError(f"specs must be a non-empty sequence of ViewSpec; got {specs!r}.")

    def multiview(images: jax.typing.ArrayLike, key: jax.Array) -> tuple[jax.Array, ...]:
        keys = jax.random.split(key, len(specs))
        return tuple(apply_view(images, k, spec) for k, spec in zip(keys, specs, strict=True))

    return multiview


def eval_view(
    images: jax.typing.ArrayLike,
    *,
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    crop_fraction: float = 1.0,
) -> jax.Array:
    """Deterministic evaluation view: to [0, 1], `center_crop_resize` to (size, size), normalize.

    Takes uint8 images, or float images in [0, 1] (checked when concrete, see `to_unit_float`).
    """
    x = center_crop_resize(to_unit_float(images), size=size, crop_fraction=crop_fraction)
    return normalize(x, mean=mean, std=std)


_SIMCLR_VIEW: dict[str, Any] = dict(
    crop_scale=(0.08, 1.0),
    flip_prob=0.5,
    brightness=0.8,
    contrast=0.8,
    saturation=0.8,
    hue=0.2,
    jitter_prob=0.8,
    gray_prob=0.2,
    blur_prob=0.5,
    solarize_prob=0.0,
)

_BYOL_VIEW: dict[str, Any] = dict(
    crop_scale=(0.08, 1.0),
    flip_prob=0.5,
    brightness=0.4,
    contrast=0.4,
    saturation=0.2,
    hue=0.1,
    jitter_prob=0.8,
    gray_prob=0.2,
)

# One view of crop and flip only, for pretext tasks (the task makes its own input and target).
_CROP_FLIP_VIEW: dict[str, Any] = dict(
    crop_scale=(0.2, 1.0),
    flip_prob=0.5,
    jitter_prob=0.0,
    gray_prob=0.0,
    blur_prob=0.0,
    solarize_prob=0.0,
)

# Recipe name -> one dict of ViewSpec fields (crop_size excluded) per view.
RECIPES: dict[str, tuple[dict[str, Any], ...]] = {
    "simclr": (_SIMCLR_VIEW, _SIMCLR_VIEW),
    "crop_flip": (_CROP_FLIP_VIEW,),
    "byol": (
        {**_BYOL_VIEW, "blur_prob": 1.0, "solarize_prob": 0.0},
        {**_BYOL_VIEW, "blur_prob": 0.1, "solarize_prob": 0.2},
    ),
}


def get_view_specs(recipe: str, *, crop_size: int, **overrides: Any) -> tuple[ViewSpec, ...]:
    """Returns the ViewSpecs of a named recipe in `RECIPES`, with `overrides` applied to every view.

    Overrides whose value is None are ignored, so config fields left unset keep the recipe's.
    - "simclr": two identical views (Chen et al. 2020, appendix A): crop scale (0.08, 1), flip
      0.5, color jitter strength s = 1 (brightness, contrast, saturation 0.8 s, hue 0.2 s) with
      prob 0.8, grayscale 0.2, blur 0.5 with sigma in (0.1, 2). SimCLR blurs for ImageNet only;
      its CIFAR-10 recipe has no blur: pass blur_prob=0.0 (and typically crop_size=32).
    - "byol": two asymmetric views (Grill et al. 2020, table 6): brightness 0.4, contrast 0.4,
      saturation 0.2, hue 0.1 with prob 0.8, grayscale 0.2; blur prob 1.0 / 0.1, solarize prob
      0.0 / 0.2 for the first / second view.
    - "crop_flip": one view, random resized crop of scale (0.2, 1) (MAE's) and flip, no colour
      change: the pretext tasks' input, from which each task makes its own input and target.
    """
    if recipe not in RECIPES:
        raise ValueError(
            f"unknown augmentation recipe {recipe!r}; valid recipes: {sorted(RECIPES)}."
        )
    fields = sorted(f.name for f in dataclasses.fields(ViewSpec) if f.name != "crop_size")
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown ViewSpec override(s) {unknown} for recipe {recipe!r}; valid fields: {fields}."
        )
    overrides = {name: value for name, value in overrides.items() if value is not None}
    return tuple(ViewSpec(crop_size=crop_size, **{**view, **overrides}) for view in RECIPES[recipe])
