"""Heads as :class:`~ssl_jax.models.ModuleDef`, and running chains of parts on views and crops."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

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


def vit_module(backbone: ModuleDef, method: str, *, mask_token: bool = True):
    """The abstract ViT module of ``backbone`` (no memory), checked to be a ViT built with a
    mask token when ``mask_token``; a ``ValueError`` saying which model fields to set."""
    module = nnx.eval_shape(lambda: backbone.build(rngs=nnx.Rngs(0)))
    if not hasattr(module, "patch_size"):
        raise ValueError(
            f"{method} needs a ViT backbone (model.backbone=vit_tiny/vit_small/vit_base, ...), "
            f"got {type(module).__name__}."
        )
    if mask_token and getattr(module, "mask_token", None) is None:
        raise ValueError(
            f"{method} masks the student's patch tokens: build the ViT with a mask token, "
            "model.mask_token=True."
        )
    return module


def embed_vit_crops(
    parts: dict,
    heads: tuple[str, str],
    params: dict,
    stats: dict,
    global_crops,
    local_crops=(),
    *,
    token_mask: jax.Array | None = None,
    train: bool = True,
    rngs: jax.Array | None = None,
) -> tuple[dict, dict]:
    """A ViT and its heads on multi-crop views: [CLS] outputs of every crop, patch outputs of
    the global crops (iBOT's and DINOv2's ``MultiCropWrapper`` with ``return_all_tokens``).

    The global crops run as one backbone batch with ``token_mask`` (``(T N, L)`` bool over
    their patches, or ``None``), the local crops as another, unmasked: they give only [CLS].
    ``heads = (cls_head, patch_head)``, names in ``parts``, the same name for a shared head.
    ``rngs`` (a key, or ``None``) drives the backbone's dropout and drop path; ``train=False``
    runs it deterministic (a teacher). Returns ``({"cls_features": (S N, D) backbone [CLS]
    features, global crops first, "cls": (S N, K) cls-head outputs, "patch": (T N, L, K')
    patch-head outputs}, new_stats)``.
    """
    cls_head, patch_head = heads
    keys = [None, None] if rngs is None else list(jax.random.split(rngs))
    out, backbone_stats = parts["backbone"].apply(
        params["backbone"],
        stats["backbone"],
        jnp.concatenate(global_crops),
        train=train,
        return_all=True,
        token_mask=token_mask,
        rngs=keys[0],
    )
    features, patches = [out["pooled"]], out["tokens"][:, 1:]
    if local_crops:
        local, backbone_stats = parts["backbone"].apply(
            params["backbone"],
            backbone_stats,
            jnp.concatenate(local_crops),
            train=train,
            rngs=keys[1],
        )
        features.append(local)
    features = jnp.concatenate(features)
    new_stats = {**stats, "backbone": backbone_stats}
    cls, new_stats[cls_head] = parts[cls_head].apply(
        params[cls_head], new_stats[cls_head], features, train=train
    )
    n, length, dim = patches.shape
    patch, new_stats[patch_head] = parts[patch_head].apply(
        params[patch_head], new_stats[patch_head], patches.reshape(n * length, dim), train=train
    )
    out = {"cls_features": features, "cls": cls, "patch": patch.reshape(n, length, -1)}
    return out, new_stats
