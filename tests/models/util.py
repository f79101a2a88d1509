"""Test helpers: a module built and split in one call, and a parameter count."""

from typing import Any

import jax
from flax import nnx

from ssl_jax.models import get_backbone, split_module


def make_model(factory, *, seed: int, **kwargs: Any):
    """``split_module(factory(rngs=nnx.Rngs(seed), **kwargs))``; ``factory`` may be a
    backbone name (``make_model("resnet18", seed=0, stem="cifar")``)."""
    if isinstance(factory, str):
        return split_module(get_backbone(factory, rngs=nnx.Rngs(seed), **kwargs))
    return split_module(factory(rngs=nnx.Rngs(seed), **kwargs))


def num_params(tree: Any) -> int:
    """Total number of array elements in a pytree."""
    return sum(x.size for x in jax.tree.leaves(tree))
