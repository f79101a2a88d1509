"""Parameter groups: a label for every parameter, per-group overrides, ViT layer-wise lr decay.

**Labels.** Every leaf of a params tree ``{"backbone": ..., "projector": ..., ...}`` is labelled
``"<part>/<kind>"``. ``part`` is its top-level key (``backbone``, ``projector``, ``predictor``,
``head``, ``prototypes``: any key keeps its own name). ``kind`` is ``weight`` for a parameter
with two or more dimensions and ``norm_bias`` for one with fewer (biases, norm scales and
offsets, scalars): the split :func:`ssl_jax.optim.decay_mask` makes, so the [CLS] token and
position embeddings of a ViT are weights.

**Patterns.** A group pattern names a part (``"head"``: all of its leaves), a kind
(``"norm_bias"``: that kind in every part) or a label (``"head/norm_bias"``). Overrides are
merged field by field, a label's entry over a kind's over a part's: with
``{"head": {"lr_mult": 10.0, "weight_decay": 0.1}, "norm_bias": {"weight_decay": 0.0}}`` the
head's biases train at 10× the learning rate without weight decay.

**Layer-wise lr decay** (ELECTRA, BEiT; MAE's fine-tuning, ``util/lr_decay.py``): the
patch embedding, [CLS] token and position embeddings are layer 0, block ``i`` is layer
``i + 1``, everything after the blocks (final norm, heads) layer ``depth + 1``, and layer ``l``
trains at ``decay ** (depth + 1 - l)`` times the learning rate.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

KINDS = ("weight", "norm_bias")
# The parts (top-level params keys) the shipped methods use; the pretraining config offers a
# group for each (a config file may add others, or a "part/kind" label).
PARTS = ("backbone", "projector", "predictor", "head", "prototypes")


def key_path(path: Sequence[Any]) -> tuple[str, ...]:
    """A JAX key path as strings: ``('backbone', 'blocks', '0', 'attn', 'qkv', 'kernel')``.

    ``nnx.State`` trees end each path in the ``.value`` of an ``nnx.Variable``; it is dropped,
    so an ``nnx.State`` and its pure-dict form (``nnx.to_pure_dict``) give the same paths.
    """
    keys = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            keys.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            keys.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            if key.name != "value":
                keys.append(key.name)
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            keys.append(str(key.key))
        else:
            keys.append(str(key))
    return tuple(keys)


def param_kind(leaf: Any) -> str:
    """``"weight"`` for a parameter with two or more dimensions, else ``"norm_bias"``."""
    return "weight" if jnp.ndim(leaf) > 1 else "norm_bias"


def param_label(path: Sequence[str], leaf: Any) -> str:
    """``"<part>/<kind>"`` of the leaf at ``path`` (strings, as :func:`key_path` returns)."""
    part = path[0] if path else "params"
    return f"{part}/{param_kind(leaf)}"


def label_params(params: Any) -> Any:
    """A tree shaped like ``params`` holding each leaf's ``"<part>/<kind>"`` label.

    Works on concrete, abstract (``jax.eval_shape``) and traced params alike: only paths and
    numbers of dimensions are read.
    """
    return jax.tree_util.tree_map_with_path(lambda p, x: param_label(key_path(p), x), params)


def group_names(params: Any) -> list[str]:
    """Every pattern that selects leaves of ``params``: its parts, kinds and labels, sorted."""
    labels = set(jax.tree.leaves(label_params(params)))
    parts = {label.rsplit("/", 1)[0] for label in labels}
    kinds = {label.rsplit("/", 1)[1] for label in labels}
    return sorted(parts | kinds | labels)


def check_groups(
    params: Any, groups: Mapping[str, Mapping[str, Any]], fields: Sequence[str]
) -> None:
    """Raises ``ValueError`` if ``groups`` names a pattern that selects no leaf of ``params``,
    sets a field outside ``fields``, or a part of ``params`` is named like a kind."""
    labels = set(jax.tree.leaves(label_params(params)))
    parts = sorted({label.rsplit("/", 1)[0] for label in labels})
    clash = sorted(set(parts) & set(KINDS))
    if clash and groups:
        raise ValueError(
            f"params has top-level keys {clash} named like parameter kinds {list(KINDS)}; "
            "group patterns would be ambiguous. Rename those parts."
        )
    valid = group_names(params)
    unknown = sorted(set(groups) - set(valid))
    if unknown:
        raise ValueError(
            f"param_groups names {unknown}, which select no parameter; the groups of these "
            f"params are {valid} (a part, a kind, or 'part/kind')."
        )
    for name, entry in groups.items():
        bad = sorted(set(entry) - set(fields))
        if bad:
            raise ValueError(
                f"param_groups[{name!r}] sets {bad}; a group's fields are {list(fields)}."
            )


def group_values(
    params: Any,
    groups: Mapping[str, Mapping[str, Any]],
    field: str,
    default: float | Mapping[str, float],
) -> Any:
    """A tree shaped like ``params`` holding ``field`` for each leaf.

    The value comes from the most specific entry of ``groups`` that matches the leaf's label
    and sets ``field`` (``"part/kind"`` over ``"kind"`` over ``"part"``), else from
    ``default``: one value, or a mapping from kind (``"weight"``, ``"norm_bias"``) to value.
    Patterns are not checked here; see :func:`check_groups`.
    """

    def value(path, leaf):
        label = param_label(key_path(path), leaf)
        part, kind = label.rsplit("/", 1)
        out = default[kind] if isinstance(default, Mapping) else default
        for pattern in (part, kind, label):
            if field in groups.get(pattern, {}):
                out = groups[pattern][field]
        return out

    return jax.tree_util.tree_map_with_path(value, params)


def layer_id_for_vit(path: Sequence[str], depth: int) -> int:
    """The layer of a ViT parameter at ``path`` (keys inside the backbone), as MAE numbers them.

    ``cls_token``, ``pos_embed`` and ``patch_embed/...`` are layer 0, ``blocks/<i>/...`` layer
    ``i + 1``, anything else (the final ``norm``, a head) layer ``depth + 1``.
    """
    if not path:
        return depth + 1
    if path[0] in ("cls_token", "pos_embed", "patch_embed"):
        return 0
    if path[0] == "blocks" and len(path) > 1:
        return int(path[1]) + 1
    return depth + 1


def vit_depth(params: Any, part: str = "backbone") -> int:
    """The number of transformer blocks in ``params[part]``, from its ``blocks/<i>`` paths.

    Raises ``ValueError`` when ``params[part]`` holds no ``blocks/<i>`` parameters (not a ViT).
    """
    paths = [key_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    inside = [p[1:] for p in paths if p and p[0] == part]
    blocks = {int(p[1]) for p in inside if len(p) > 1 and p[0] == "blocks" and p[1].isdigit()}
    if not blocks:
        tops = sorted({p[0] for p in inside if p})
        raise ValueError(
            f"layer_decay needs a ViT in params[{part!r}] (parameters under blocks/<i>/); "
            f"found {tops or 'no ' + part + ' parameters'}. Unset optim.layer_decay for other "
            "backbones."
        )
    return max(blocks) + 1


def layer_decay_scales(params: Any, decay: float, part: str = "backbone") -> Any:
    """A tree shaped like ``params``: ``decay ** (depth + 1 - layer_id)`` for each leaf of the
    ViT in ``params[part]`` (:func:`layer_id_for_vit`), 1.0 for every other leaf."""
    depth = vit_depth(params, part)

    def scale(path, leaf):
        keys = key_path(path)
        if not keys or keys[0] != part:
            return 1.0
        return float(decay) ** (depth + 1 - layer_id_for_vit(keys[1:], depth))

    return jax.tree_util.tree_map_with_path(scale, params)
