"""The view recipe of a pretraining run, read from its ``augment`` config section.

Pure config -> :class:`~ssl_jax.augment.ViewSpec` adapters. Pretraining builds its views
with them; downstream programs never do: they read the encoder export's spec
(:func:`ssl_jax.export.load_export`), which records the input an encoder expects.
"""

import ml_collections

from ssl_jax.augment.multicrop import (
    MULTICROP_FIELDS,
    MULTICROP_RECIPES,
    MultiCrop,
    get_multicrop,
)
from ssl_jax.augment.pipeline import ViewSpec, get_view_specs

_NOT_OVERRIDES = ("recipe", "crop_size", *MULTICROP_FIELDS)


def _overrides(augment: ml_collections.ConfigDict) -> dict:
    """The non-empty ViewSpec overrides of ``augment``; lists (from JSON) become tuples."""
    return {
        k: (tuple(v) if isinstance(v, list) else v)
        for k, v in augment.items()
        if k not in _NOT_OVERRIDES and v is not None and v != () and v != []
    }


def view_specs_from_config(augment: ml_collections.ConfigDict) -> tuple[ViewSpec, ...]:
    """``get_view_specs(recipe, crop_size=..., **overrides)``.

    Fields that are None (numbers) or empty (tuples) keep the recipe's value; tuple fields
    use ``()`` for "unset" because a None tuple cannot be overridden from the command line.
    """
    return get_view_specs(augment.recipe, crop_size=augment.crop_size, **_overrides(augment))


def eval_settings(augment: ml_collections.ConfigDict) -> dict:
    """Size and normalisation for frozen-feature extraction, matching the training views
    (the first global crop for multi-crop recipes)."""
    if augment.recipe in MULTICROP_RECIPES:
        spec = multicrop_from_config(augment).global_specs[0]
    else:
        spec = view_specs_from_config(augment)[0]
    return {"size": spec.crop_size, "mean": spec.mean, "std": spec.std}


def multicrop_from_config(augment: ml_collections.ConfigDict) -> MultiCrop:
    """The `MultiCrop` of the ``augment`` section (shared with SwAV).

    ``recipe`` names a multi-crop recipe (``dino``, ``swav``), ``crop_size`` is the global
    size; ``local_crop_size``, ``num_local_crops``, ``global_crop_scale`` and
    ``local_crop_scale`` (``()`` = the recipe's) describe the crops; the other non-empty
    fields override ViewSpec fields of every crop, as for two-view recipes.
    """
    overrides = _overrides(augment)
    if "crop_scale" in overrides:
        raise ValueError(
            f"augment.crop_scale={overrides['crop_scale']} is ambiguous for multi-crop recipes; "
            "set augment.global_crop_scale and augment.local_crop_scale instead."
        )

    def scale(name):
        value = augment.get(name)
        return tuple(value) if value else None

    return get_multicrop(
        augment.recipe,
        global_size=augment.crop_size,
        local_size=augment.get("local_crop_size"),
        num_local=int(augment.get("num_local_crops") or 0),
        global_scale=scale("global_crop_scale"),
        local_scale=scale("local_crop_scale"),
        **overrides,
    )
