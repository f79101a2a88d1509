"""A backbone from the ``model`` config section: one entry per backbone family.

The ``model`` section (of a run config, and of an export's spec, which copies it) names the
backbone (``model.backbone``, a name of :data:`~ssl_jax.models.BACKBONES`) and the fields of
its family. :data:`FAMILIES` holds, per family, its factories by name and the hook that turns
the family's fields into factory keyword arguments; :func:`make_backbone` reads the fields
every family shares (``dtype``, ``remat``) and calls the family's factory. A new backbone
family is one entry here: the registry's names come from this table.
"""

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import ml_collections
from flax import nnx

from ssl_jax.models.module_def import ModuleDef, module_def
from ssl_jax.models.resnet import RESNETS
from ssl_jax.models.vit import VITS

# The backbone's computation dtype (``model.dtype``): parameters, BatchNorm statistics and the
# pooled output stay float32 either way.
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class BackboneFamily(NamedTuple):
    """One backbone family: ``factories`` by backbone name (each called as
    ``factory(rngs=..., dtype=..., **options)``) and ``options(model, remat)``, the factory
    keyword arguments the family's fields of the ``model`` section give (``remat``: whether
    ``model.remat`` asks for rematerialisation)."""

    factories: Mapping[str, Callable[..., nnx.Module]]
    options: Callable[[ml_collections.ConfigDict, bool], dict]


def compute_dtype(model: Mapping[str, Any]):
    """The computation dtype ``model.dtype`` names (absent: float32)."""
    name = model.get("dtype", "float32")
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"model.dtype={name!r} is unknown; valid: {sorted(COMPUTE_DTYPES)}.")
    return COMPUTE_DTYPES[name]


def resnet_options(model: ml_collections.ConfigDict, remat: bool) -> dict:
    """ResNet fields: ``width``, ``stem`` (required), ``zero_init_residual`` (default True);
    ``remat`` recomputes whole blocks, so ``remat_policy`` must be ``"full"``."""
    if remat and model.get("remat_policy", "full") != "full":
        raise ValueError(
            f"model.remat_policy={model.remat_policy!r}: ResNets recompute whole blocks "
            "only; set it 'full' (policies apply to ViTs)."
        )
    return {
        "width": model.width,
        "stem": model.stem,
        "zero_init_residual": model.get("zero_init_residual", True),
        "remat": remat,
    }


def vit_options(model: ml_collections.ConfigDict, remat: bool) -> dict:
    """ViT fields, all optional: ``img_size`` (224), ``pool`` (``"cls"``), the training
    regularisers ``drop_rate`` and ``drop_path_rate`` (0; no parameters: fine-tuning sets
    them), ``remat_policy`` when ``remat`` (``"full"``), and overrides of the family's shape
    (``patch_size``: 16, 14 for ViT-H and ViT-g; ``embed_dim``, ``depth``, ``num_heads``: a
    smaller ViT than ViT-Ti in tests); ``num_registers`` and ``layer_scale`` (DINOv2's register
    tokens and LayerScale, off when absent)."""
    kwargs = {
        "img_size": model.get("img_size", 224),
        "pool": model.get("pool", "cls"),
        "drop_rate": model.get("drop_rate", 0.0),
        "drop_path_rate": model.get("drop_path_rate", 0.0),
    }
    if remat:
        kwargs["remat"] = model.get("remat_policy", "full")
    keys = ("patch_size", "embed_dim", "depth", "num_heads", "num_registers", "layer_scale")
    kwargs.update({k: model[k] for k in keys if k in model})
    return kwargs


FAMILIES: dict[str, BackboneFamily] = {
    "resnet": BackboneFamily(RESNETS, resnet_options),
    "vit": BackboneFamily(VITS, vit_options),
}


def get_family(name: str) -> BackboneFamily:
    """The family of backbone ``name``; ``ValueError`` listing the valid names if none has it."""
    for family in FAMILIES.values():
        if name in family.factories:
            return family
    valid = sorted(n for family in FAMILIES.values() for n in family.factories)
    raise ValueError(f"Unknown backbone {name!r}; valid names: {valid}.")


def _build(model: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    """The backbone of ``model``, given only its family's fields."""
    dtype = compute_dtype(model)
    remat = bool(model.get("remat", False))
    family = get_family(model.backbone)
    options = family.options(model, remat)
    return family.factories[model.backbone](rngs=rngs, dtype=dtype, **options)


def make_backbone(model: ml_collections.ConfigDict) -> ModuleDef:
    """The backbone of the ``model`` config section as a :class:`~ssl_jax.models.ModuleDef`
    (structure only, no parameter memory)."""
    return module_def(lambda rngs: _build(model, rngs))


__all__ = [
    "COMPUTE_DTYPES",
    "FAMILIES",
    "BackboneFamily",
    "compute_dtype",
    "get_family",
    "make_backbone",
    "resnet_options",
    "vit_options",
]
