"""Flax NNX backbones and heads, the functional bridge the train step uses (``ModuleDef``),
and the backbone of a ``model`` config section (:func:`make_backbone`)."""

from ssl_jax.models.build import FAMILIES, compute_dtype, make_backbone
from ssl_jax.models.decoders import ConvDecoder, Data2VecDecoder, MAEDecoder, sincos_pos_embed_2d
from ssl_jax.models.functional import (
    apply_module,
    split_module,
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
from ssl_jax.models.text import TEXT_ENCODERS, MLMHead, RTDHead, TextEncoder
from ssl_jax.models.vit import (
    VITS,
    VisionTransformer,
    interpolate_pos_embed,
    vit_base,
    vit_giant,
    vit_huge,
    vit_large,
    vit_small,
    vit_tiny,
)

__all__ = [
    "BACKBONES",
    "FAMILIES",
    "RESNETS",
    "TEXT_ENCODERS",
    "VITS",
    "BasicBlock",
    "Bottleneck",
    "ConvDecoder",
    "Data2VecDecoder",
    "DINOHead",
    "LinearClassifier",
    "MAEDecoder",
    "MLMHead",
    "MLPHead",
    "ModuleDef",
    "RTDHead",
    "ResNet",
    "TextEncoder",
    "VisionTransformer",
    "WeightNormLinear",
    "apply_module",
    "compute_dtype",
    "get_backbone",
    "interpolate_pos_embed",
    "make_backbone",
    "module_def",
    "resnet18",
    "resnet34",
    "resnet50",
    "sincos_pos_embed_2d",
    "split_module",
    "vit_base",
    "vit_giant",
    "vit_huge",
    "vit_large",
    "vit_small",
    "vit_tiny",
]
