"""The view recipe of a run, read from its ``augment`` config section."""

import ml_collections

from ssl_jax.augment import ViewSpec, get_view_specs

_NOT_OVERRIDES = ("recipe", "crop_size")


def view_specs_from_config(augment: ml_collections.ConfigDict) -> tuple[ViewSpec, ...]:
    """``get_view_specs(recipe, crop_size=..., **overrides)``.

    Fields that are None (numbers) or empty (tuples) keep the recipe's value; tuple fields
    use ``()`` for "unset" because a None tuple cannot be overridden from the command line.
    """
    overrides = {
        k: (tuple(v) if isinstance(v, list) else v)
        for k, v in augment.items()
        if k not in _NOT_OVERRIDES and v is not None and v != () and v != []
    }
    return get_view_specs(augment.recipe, crop_size=augment.crop_size, **overrides)


def eval_settings(augment: ml_collections.ConfigDict) -> dict:
    """Size and normalisation for frozen-feature extraction, matching the training views."""
    spec = view_specs_from_config(augment)[0]
    return {"size": spec.crop_size, "mean": spec.mean, "std": spec.std}
