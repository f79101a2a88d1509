"""Multi-crop views (SwAV, DINO): a few large global crops and many small local crops.

Every crop is one `apply_view` of the same uint8 batch with its own key; global crops come
first, in the order of their specs, then the local crops, all of one `ViewSpec`. Crops of one
size form one array each, so a method can run the backbone once per resolution.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from ssl_jax.augment.pipeline import RECIPES, ViewSpec, apply_view

# `augment` config fields that describe the crops rather than override ViewSpec fields.
MULTICROP_FIELDS = ("local_crop_size", "num_local_crops", "global_crop_scale", "local_crop_scale")


class MultiCrop(NamedTuple):
    """The specs of a multi-crop recipe: ``make_multicrop_fn(*multicrop)`` builds its views."""

    global_specs: tuple[ViewSpec, ...]
    local_spec: ViewSpec | None
    num_local: int


def make_multicrop_fn(
    global_specs: Sequence[ViewSpec], local_spec: ViewSpec | None, num_local: int
) -> Callable[
    [jax.typing.ArrayLike, jax.Array], tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]
]:
    """Returns ``fn(images_uint8, key) -> (globals, locals)``.

    ``globals`` holds one ``(N, G, G, 3)`` view per global spec, ``locals`` ``num_local``
    views ``(N, L, L, 3)`` of ``local_spec``. ``key`` is split once into one key per crop
    (globals first); the local crops are one ``vmap`` over their keys, the same views as
    calling `apply_view` with each key. Float images must be in [0, 1], as for `apply_view`
    (checked when concrete; a jitted caller's traced images cannot be).
    """
    global_specs = tuple(global_specs)
    if not global_specs or not all(isinstance(s, ViewSpec) for s in global_specs):
        raise ValueError(
            f"global_specs must be a non-empty sequence of ViewSpec; got {global_specs!r}."
        )
    if not isinstance(num_local, int) or num_local < 0:
        raise ValueError(f"num_local must be an integer >= 0; got {num_local!r}.")
    if num_local and not isinstance(local_spec, ViewSpec):
        raise ValueError(
            f"num_local={num_local} local crops need a local_spec ViewSpec; got {local_spec!r}."
        )
    num_global = len(global_specs)

    def multicrop(images, key):
        keys = jax.random.split(key, num_global + num_local)
        globals_ = tuple(
            apply_view(images, k, spec)
            for k, spec in zip(keys[:num_global], global_specs, strict=True)
        )
        if not num_local:
            return globals_, ()
        stacked = jax.vmap(lambda k: apply_view(images, k, local_spec))(keys[num_global:])
        return globals_, tuple(stacked)

    return multicrop


def _spec(view: dict[str, Any], size: int, scale, overrides: dict[str, Any]) -> ViewSpec:
    return ViewSpec(crop_size=size, **{**view, **overrides, "crop_scale": scale})


def _multicrop(
    global_views: Sequence[dict[str, Any]],
    local_view: dict[str, Any],
    *,
    global_size: int,
    local_size: int | None,
    num_local: int,
    global_scale: Sequence[float],
    local_scale: Sequence[float],
    overrides: dict[str, Any],
) -> MultiCrop:
    fields = sorted(f.name for f in dataclasses.fields(ViewSpec))
    unknown = sorted(set(overrides) - set(fields) | ({"crop_size", "crop_scale"} & set(overrides)))
    if unknown:
        valid = [f for f in fields if f not in ("crop_size", "crop_scale")]
        raise ValueError(
            f"unknown multi-crop override(s) {unknown}; sizes and scales are the arguments "
            f"global_size/local_size/global_scale/local_scale, other valid fields: {valid}."
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if num_local and local_size is None:
        raise ValueError(f"num_local={num_local} local crops need a local_size.")
    global_specs = tuple(_spec(v, global_size, global_scale, overrides) for v in global_views)
    local_spec = _spec(local_view, local_size, local_scale, overrides) if num_local else None
    return MultiCrop(global_specs, local_spec, num_local)


def dino_multicrop(
    global_size: int,
    local_size: int | None,
    num_local: int,
    *,
    global_scale: Sequence[float] = (0.4, 1.0),
    local_scale: Sequence[float] = (0.05, 0.4),
    **overrides: Any,
) -> MultiCrop:
    """DINO's views (Caron et al. 2021, ``DataAugmentationDINO``): 2 global + ``num_local``.

    All crops: flip 0.5, colour jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1)
    with prob 0.8, grayscale 0.2 (BYOL's colour recipe). Global crops: scale (0.4, 1) (the
    authors' ``global_crops_scale``), blur prob 1.0 / 0.1 and solarize prob 0 / 0.2 on the
    first / second. Local crops: scale (0.05, 0.4), blur prob 0.5, no solarize. ImageNet
    sizes are 224 and 96. ``overrides`` (ViewSpec fields other than size and scale) apply
    to every crop, e.g. ``blur_prob=0.0`` for small images.
    """
    first, second = RECIPES["byol"]
    local = {**first, "blur_prob": 0.5, "solarize_prob": 0.0}
    return _multicrop(
        (first, second),
        local,
        global_size=global_size,
        local_size=local_size,
        num_local=num_local,
        global_scale=global_scale,
        local_scale=local_scale,
        overrides=overrides,
    )


def swav_multicrop(
    global_size: int,
    local_size: int | None,
    num_local: int,
    *,
    global_scale: Sequence[float] = (0.14, 1.0),
    local_scale: Sequence[float] = (0.05, 0.14),
    **overrides: Any,
) -> MultiCrop:
    """SwAV's views (Caron et al. 2020, ``main_swav.py``): 2 global + ``num_local``, all alike.

    Every crop: flip 0.5, the authors' ``get_color_distortion(s=1.0)`` (brightness,
    contrast, saturation 0.8, hue 0.2, prob 0.8; grayscale 0.2) and Gaussian blur with
    prob 0.5 (SimCLR's recipe); scales (0.14, 1) global and (0.05, 0.14) local, sizes 224
    and 96 on ImageNet. This is the authors' ImageNet recipe; CIFAR recipes often drop the
    blur (SimCLR's does: pass ``blur_prob=0.0``), though solo-learn's CIFAR SwAV keeps it.
    """
    view = RECIPES["simclr"][0]
    return _multicrop(
        (view, view),
        view,
        global_size=global_size,
        local_size=local_size,
        num_local=num_local,
        global_scale=global_scale,
        local_scale=local_scale,
        overrides=overrides,
    )


MULTICROP_RECIPES: dict[str, Callable[..., MultiCrop]] = {
    "dino": dino_multicrop,
    "swav": swav_multicrop,
}


def get_multicrop(
    recipe: str,
    *,
    global_size: int,
    local_size: int | None = None,
    num_local: int = 0,
    global_scale: Sequence[float] | None = None,
    local_scale: Sequence[float] | None = None,
    **overrides: Any,
) -> MultiCrop:
    """The `MultiCrop` of a named recipe in `MULTICROP_RECIPES`; None keeps its default."""
    if recipe not in MULTICROP_RECIPES:
        raise ValueError(
            f"unknown multi-crop recipe {recipe!r}; valid recipes: {sorted(MULTICROP_RECIPES)}."
        )
    scales = {"global_scale": global_scale, "local_scale": local_scale}
    scales = {k: tuple(v) for k, v in scales.items() if v is not None}
    return MULTICROP_RECIPES[recipe](global_size, local_size, num_local, **scales, **overrides)


__all__ = [
    "MULTICROP_FIELDS",
    "MULTICROP_RECIPES",
    "MultiCrop",
    "dino_multicrop",
    "get_multicrop",
    "make_multicrop_fn",
    "swav_multicrop",
]
