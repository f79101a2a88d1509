"""The encoder: a backbone built from the ``model`` config, and its frozen-feature function.

The encoder export (``{"params", "batch_stats"}`` of the backbone) plus the ``model``
section of the run's config are the stable interface between pretraining and the
downstream programs (linear probe, kNN, fine-tuning).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ssl_jax.augment import eval_view
from ssl_jax.models import VITS, apply_module, get_backbone, split_module


class Backbone(NamedTuple):
    """A backbone's static structure: its NNX graphdef and output width."""

    graphdef: Any
    feature_dim: int
    config: ml_collections.ConfigDict

    def init(self, key: jax.Array) -> tuple[Any, Any]:
        """Fresh ``(params, batch_stats)``; jittable."""
        _, params, stats = split_module(_build(self.config, nnx.Rngs(params=key)))
        return params, stats

    def apply(self, params, batch_stats, images: jax.Array, *, train: bool):
        """Features ``(N, feature_dim)`` and the new batch statistics."""
        return apply_module(self.graphdef, params, batch_stats, images, train=train)


def _build(model: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    """The backbone of ``model``, given only its family's fields (absent ViT fields: ViT/16)."""
    if model.backbone in VITS:
        kwargs = {
            "patch_size": model.get("patch_size", 16),
            "img_size": model.get("img_size", 224),
            "pool": model.get("pool", "cls"),
        }
    else:
        kwargs = {
            "width": model.width,
            "stem": model.stem,
            "zero_init_residual": model.get("zero_init_residual", True),
        }
    return get_backbone(model.backbone, rngs=rngs, **kwargs)


def make_backbone(model: ml_collections.ConfigDict) -> Backbone:
    """Build the structure only (no parameter memory) via ``nnx.eval_shape``."""
    module = nnx.eval_shape(lambda: _build(model, nnx.Rngs(0)))
    graphdef, _, _ = split_module(module)
    return Backbone(graphdef=graphdef, feature_dim=module.feature_dim, config=model)


def make_encode_fn(backbone: Backbone, *, size: int, mean, std):
    """``encode(export, images_uint8) -> features``: eval-mode BN, deterministic resize."""

    def encode(export: dict, images: jax.Array) -> jax.Array:
        x = eval_view(images, size=size, mean=jnp.asarray(mean), std=jnp.asarray(std))
        feats, _ = backbone.apply(export["params"], export["batch_stats"], x, train=False)
        return feats

    return encode
