"""uint8 images -> the backbone's input, as an export's ``input`` spec says.

The one conversion of every encoder input: pretext methods call :func:`convert_input` on
their training inputs, :func:`preprocess` (deterministic resize, then the same conversion)
gives the evaluation input of every downstream program.
"""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ssl_jax.augment import center_crop_resize, normalize, to_grayscale, to_unit_float
from ssl_jax.pretext.lab import rgb_to_lab


def _lab_lightness(x: jax.Array) -> jax.Array:
    """CIE L* / 100 (D65 white) of sRGB ``x`` in [0, 1]: ``(..., 3)`` or gray ``(..., 1)`` ->
    ``(..., 1)`` in [0, 1]; the conversion of the colorization task's targets
    (:func:`ssl_jax.pretext.rgb_to_lab`)."""
    rgb = jnp.broadcast_to(x, (*x.shape[:-1], 3))  # gray: R = G = B
    return rgb_to_lab(rgb)[..., :1] / 100.0


def _to_color_space(x: jax.Array, color_space: str, channels: int) -> jax.Array:
    if color_space == "rgb":
        return x
    if color_space == "gray":
        y = to_grayscale(x)[..., :1] if x.shape[-1] == 3 else x[..., :1]
    else:
        y = _lab_lightness(x)
    return jnp.broadcast_to(y, (*y.shape[:-1], channels))


def convert_input(x: jax.typing.ArrayLike, input_spec: Mapping[str, Any]) -> jax.Array:
    """Float images in [0, 1] ``(N, H, W, C)`` -> the backbone's input: converted to the spec's
    colour space and channels, normalised with its mean and std (no resizing). Pretext methods
    call it on their training inputs, :func:`preprocess` on evaluation images: one conversion
    for both."""
    x = _to_color_space(jnp.asarray(x), input_spec["color_space"], input_spec["channels"])
    return normalize(x, mean=input_spec["mean"], std=input_spec["std"])


def preprocess(images: jax.typing.ArrayLike, input_spec: Mapping[str, Any]) -> jax.Array:
    """uint8 ``(N, H, W, C)`` -> the backbone's input: [0, 1], center crop resized to
    ``size`` (deterministic), then :func:`convert_input`. Float images must already be in
    [0, 1] (checked when concrete; traced, under ``jax.jit``, they cannot be)."""
    return convert_input(
        center_crop_resize(to_unit_float(images), size=input_spec["size"]), input_spec
    )


__all__ = ["convert_input", "preprocess"]
