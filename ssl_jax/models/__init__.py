"""Flax NNX backbones and heads, and the functional bridge the train step uses (``ModuleDef``)."""

from ssl_jax.models.functional import (
    apply_module,
    from_pure_dict,
    make_model,
    num_params,
    split_module,
    to_pure_dict,
)
from ssl_jax.models.heads import DINOHead, LinearClassifier, MLPHead, WeightNormLinear
from ssl_jax.models.module_def import ModuleDef, module_def
from ssl_jax.models.registry import BACKBONES, get_backbone
from ssl_jax.models.resnet import (
    RESNETS,
    BasicBlock,
    Bottleneck,
    ResNet,
    resnet18,
    resnet34,
    resnet50,
)
from ssl_jax.models.vit import (
    VITS,
    VisionTransformer,
    interpolate_pos_embed,
    vit_base,
    vit_small,
    vit_tiny,
)

__all__ = [
    "BACKBONES",
    "RESNETS",
    "VITS",
    "BasicBlock",
    "Bottleneck",
    "DINOHead",
    "LinearClassifier",
    "MLPHead",
    "ModuleDef",
    "ResNet",
    "VisionTransformer",
    "WeightNormLinear",
    "apply_module",
    "from_pure_dict",
    "get_backbone",
    "interpolate_pos_embed",
    "make_model",
    "module_def",
    "num_params",
    "resnet18",
    "resnet34",
    "resnet50",
    "split_module",
    "to_pure_dict",
    "vit_base",
    "vit_small",
    "vit_tiny",
]
