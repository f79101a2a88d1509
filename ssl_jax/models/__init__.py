"""Flax NNX backbones and heads, and the functional bridge the train step uses."""

from ssl_jax.models.functional import (
    apply_module,
    from_pure_dict,
    make_model,
    num_params,
    split_module,
    to_pure_dict,
)
from ssl_jax.models.heads import LinearClassifier, MLPHead
from ssl_jax.models.resnet import (
    BACKBONES,
    BasicBlock,
    Bottleneck,
    ResNet,
    get_backbone,
    resnet18,
    resnet34,
    resnet50,
)

__all__ = [
    "BACKBONES",
    "BasicBlock",
    "Bottleneck",
    "LinearClassifier",
    "MLPHead",
    "ResNet",
    "apply_module",
    "from_pure_dict",
    "get_backbone",
    "make_model",
    "num_params",
    "resnet18",
    "resnet34",
    "resnet50",
    "split_module",
    "to_pure_dict",
]
