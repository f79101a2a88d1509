"""Heads as :class:`~ssl_jax.models.ModuleDef`, and running chains of parts on views and crops."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ssl_jax.models import DINOHead, MLPHead, ModuleDef, module_def


def mlp_head(in_features: int, hidden_features: int, out_features: int, **kwargs) -> ModuleDef:
    """An :class:`~ssl_jax.models.MLPHead` (projector or predictor) as a ``ModuleDef``."""
    return module_def(
        lambda rngs: MLPHead(in_features, hidden_features, out_features, rngs=rngs, **kwargs)
    )


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


def dino_head(in_features: int, out_features: int, **kwargs) -> ModuleDef:
    """A :class:`~ssl_jax.models.DINOHead` as a ``ModuleDef``."""
    return module_def(lambda rngs: DINOHead(in_features, out_features, rngs=rngs, **kwargs))


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
