"""Heads as (graphdef, init, apply) triples, and running chains of parts on views and crops."""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.models import DINOHead, MLPHead, apply_module, split_module


class HeadDef(NamedTuple):
    """The static structure of a head, built once; params live in plain pytrees."""

    graphdef: Any
    build: Callable[[nnx.Rngs], nnx.Module]

    def init(self, key: jax.Array) -> tuple[Any, Any]:
        _, params, stats = split_module(self.build(nnx.Rngs(params=key)))
        return params, stats

    def apply(self, params, batch_stats, x, *, train: bool):
        return apply_module(self.graphdef, params, batch_stats, x, train=train)


def mlp_head(in_features: int, hidden_features: int, out_features: int, **kwargs) -> HeadDef:
    """An :class:`~ssl_jax.models.MLPHead` (projector or predictor) as a :class:`HeadDef`."""

    def build(rngs):
        return MLPHead(in_features, hidden_features, out_features, rngs=rngs, **kwargs)

    graphdef, _, _ = split_module(nnx.eval_shape(lambda: build(nnx.Rngs(0))))
    return HeadDef(graphdef=graphdef, build=build)


def init_parts(parts: dict, key: jax.Array) -> tuple[dict, dict]:
    """``(params, batch_stats)`` dicts keyed like ``parts``, one key per part."""
    keys = jax.random.split(key, len(parts))
    params, stats = {}, {}
    for k, (name, part) in zip(keys, parts.items(), strict=True):
        params[name], stats[name] = part.init(k)
    return params, stats


def apply_chain(
    parts: dict, names: Sequence[str], params: dict, stats: dict, x, *, train: bool = True
):
    """Run ``parts[names[0]]``, then the next on its output...; returns (out, new stats)."""
    new_stats = dict(stats)
    for name in names:
        x, new_stats[name] = parts[name].apply(params[name], stats[name], x, train=train)
    return x, new_stats


def dino_head(in_features: int, out_features: int, **kwargs) -> HeadDef:
    """A :class:`~ssl_jax.models.DINOHead` as a :class:`HeadDef`."""

    def build(rngs):
        return DINOHead(in_features, out_features, rngs=rngs, **kwargs)

    graphdef, _, _ = split_module(nnx.eval_shape(lambda: build(nnx.Rngs(0))))
    return HeadDef(graphdef=graphdef, build=build)


def embed_crops(parts: dict, head: str, params: dict, stats: dict, crops) -> tuple[jax.Array, dict]:
    """``parts[head]`` on the backbone features of ``crops``, in order; returns (out, stats).

    Consecutive crops of one shape are one backbone batch (the authors'
    ``MultiCropWrapper``: BatchNorm statistics per resolution, updated batch after batch);
    the head then runs once on all features concatenated.
    """
    groups = []
    for crop in crops:
        if groups and groups[-1][0].shape == crop.shape:
            groups[-1].append(crop)
        else:
            groups.append([crop])
    backbone_stats = stats["backbone"]
    features = []
    for group in groups:
        f, backbone_stats = parts["backbone"].apply(
            params["backbone"], backbone_stats, jnp.concatenate(group), train=True
        )
        features.append(f)
    out, head_stats = parts[head].apply(
        params[head], stats[head], jnp.concatenate(features), train=True
    )
    return out, {**stats, "backbone": backbone_stats, head: head_stats}
