"""The backbone registry: every backbone family's factories by name (from
:data:`ssl_jax.models.build.FAMILIES`, where a family is added)."""

from collections.abc import Callable
from typing import Any

from flax import nnx

from ssl_jax.models.build import FAMILIES

BACKBONES: dict[str, Callable[..., nnx.Module]] = {
    name: factory for family in FAMILIES.values() for name, factory in family.factories.items()
}


def get_backbone(name: str, *, rngs: nnx.Rngs, **kwargs: Any) -> nnx.Module:
    """Builds the backbone registered as ``name`` in ``BACKBONES``; kwargs go to its factory."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; valid names: {sorted(BACKBONES)}.")
    return BACKBONES[name](rngs=rngs, **kwargs)


__all__ = ["BACKBONES", "get_backbone"]
