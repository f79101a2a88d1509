import jax
import numpy as np
import pytest
from flax import nnx

from ssl_jax.models import split_module
from ssl_jax.models.vit import VisionTransformer
from ssl_jax.param_groups import (
    check_groups,
    group_names,
    group_values,
    key_path,
    label_params,
    layer_decay_scales,
    layer_id_for_vit,
    vit_depth,
)

FIELDS = ("lr_mult", "weight_decay")


def by_path(tree):
    """``{path as a tuple of strings: leaf}`` of a tree."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {key_path(path): leaf for path, leaf in flat}


def zeros(*shape):
    return np.zeros(shape, np.float32)


def toy_params():
    return {
        "backbone": {
            "conv": {"kernel": zeros(3, 3, 2, 4)},
            "bn": {"scale": zeros(4), "bias": zeros(4)},
        },
        "projector": {"dense": {"kernel": zeros(4, 5), "bias": zeros(5)}},
        "prototypes": zeros(5, 3),
        "temperature": zeros(),
    }


def vit_like(depth=2, dim=4):
    """A ViT's parameter paths and ranks (int block keys, as ``nnx.State`` has), plus a head."""
    block = {
        "norm1": {"scale": zeros(dim), "bias": zeros(dim)},
        "attn": {"qkv": {"kernel": zeros(dim, 3 * dim), "bias": zeros(3 * dim)}},
    }
    backbone = {
        "patch_embed": {"kernel": zeros(2, 2, 3, dim), "bias": zeros(dim)},
        "cls_token": zeros(1, 1, dim),
        "pos_embed": zeros(1, 5, dim),
        "blocks": {i: block for i in range(depth)},
        "norm": {"scale": zeros(dim), "bias": zeros(dim)},
    }
    return {"backbone": backbone, "head": {"kernel": zeros(dim, 3), "bias": zeros(3)}}


# MAE's numbering for depth 2, written out by hand: embeddings 0, block i -> i + 1, rest 3.
VIT_LAYER_IDS = {
    ("patch_embed",): 0,
    ("cls_token",): 0,
    ("pos_embed",): 0,
    ("blocks", "0"): 1,
    ("blocks", "1"): 2,
    ("norm",): 3,
}


def expected_layer_id(path):
    matches = [i for prefix, i in VIT_LAYER_IDS.items() if path[: len(prefix)] == prefix]
    assert len(matches) == 1, path
    return matches[0]


def test_label_params_part_and_kind():
    assert by_path(label_params(toy_params())) == {
        ("backbone", "conv", "kernel"): "backbone/weight",
        ("backbone", "bn", "scale"): "backbone/norm_bias",
        ("backbone", "bn", "bias"): "backbone/norm_bias",
        ("projector", "dense", "kernel"): "projector/weight",
        ("projector", "dense", "bias"): "projector/norm_bias",
        ("prototypes",): "prototypes/weight",
        ("temperature",): "temperature/norm_bias",
    }


def test_group_names_are_parts_kinds_and_labels():
    params = {"backbone": toy_params()["backbone"], "head": {"bias": zeros(2)}}
    assert group_names(params) == [
        "backbone", "backbone/norm_bias", "backbone/weight", "head", "head/norm_bias",
        "norm_bias", "weight",
    ]  # fmt: skip


def test_group_values_most_specific_pattern_wins_per_field():
    groups = {
        "projector": {"lr_mult": 10.0, "weight_decay": 0.1},
        "norm_bias": {"weight_decay": 0.0},
        "backbone/norm_bias": {"weight_decay": 0.5},
    }
    params = toy_params()
    lr = by_path(group_values(params, groups, "lr_mult", 1.0))
    wd = by_path(group_values(params, groups, "weight_decay", {"weight": 0.05, "norm_bias": 0.2}))
    assert lr == {
        ("backbone", "conv", "kernel"): 1.0,
        ("backbone", "bn", "scale"): 1.0,
        ("backbone", "bn", "bias"): 1.0,
        ("projector", "dense", "kernel"): 10.0,
        ("projector", "dense", "bias"): 10.0,  # the kind's entry sets no lr_mult
        ("prototypes",): 1.0,
        ("temperature",): 1.0,
    }
    assert wd == {
        ("backbone", "conv", "kernel"): 0.05,
        ("backbone", "bn", "scale"): 0.5,  # label over kind
        ("backbone", "bn", "bias"): 0.5,
        ("projector", "dense", "kernel"): 0.1,
        ("projector", "dense", "bias"): 0.0,  # kind over part
        ("prototypes",): 0.05,
        ("temperature",): 0.0,
    }


def test_check_groups_names_the_valid_groups():
    params = {"backbone": toy_params()["backbone"], "head": {"bias": zeros(2)}}
    check_groups(params, {"head": {"lr_mult": 2.0}, "backbone/weight": {}}, FIELDS)
    with pytest.raises(ValueError, match=r"\['head/weight', 'predictor'\].*'backbone/norm_bias'"):
        check_groups(params, {"predictor": {"lr_mult": 2.0}, "head/weight": {}}, FIELDS)
    with pytest.raises(ValueError, match=r"\['lr'\].*'lr_mult', 'weight_decay'"):
        check_groups(params, {"head": {"lr": 2.0}}, FIELDS)
    with pytest.raises(ValueError, match="ambiguous"):
        check_groups({"weight": zeros(2, 2)}, {"weight": {"lr_mult": 2.0}}, FIELDS)


def test_layer_id_for_vit_follows_mae():
    cases = {
        ("cls_token",): 0,
        ("pos_embed",): 0,
        ("patch_embed", "kernel"): 0,
        ("patch_embed", "bias"): 0,
        ("blocks", "0", "norm1", "scale"): 1,
        ("blocks", "5", "attn", "qkv", "kernel"): 6,
        ("blocks", "11", "mlp", "fc2", "bias"): 12,
        ("norm", "scale"): 13,
        ("fc_norm", "bias"): 13,
        ("head", "kernel"): 13,
    }
    for path, layer in cases.items():
        assert layer_id_for_vit(path, depth=12) == layer, path


def test_layer_decay_scales_match_a_hand_written_table():
    decay = 0.5
    scales = by_path(layer_decay_scales(vit_like(depth=2), decay))
    expected = {
        path: 1.0 if path[0] == "head" else decay ** (3 - expected_layer_id(path[1:]))
        for path in scales
    }
    assert scales == expected
    assert scales[("backbone", "patch_embed", "kernel")] == 0.125
    assert scales[("backbone", "blocks", "1", "attn", "qkv", "bias")] == 0.5
    assert scales[("backbone", "norm", "scale")] == 1.0


def test_real_vit_paths_get_mae_layers_and_kinds():
    model = nnx.eval_shape(
        lambda: VisionTransformer(
            img_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2, rngs=nnx.Rngs(0)
        )
    )
    params = {"backbone": split_module(model)[1]}
    assert vit_depth(params) == 2
    scales = by_path(layer_decay_scales(params, 0.5))
    labels = by_path(label_params(params))
    assert len(scales) == 30
    for path, scale in scales.items():
        assert path[0] == "backbone" and path[-1] in (
            "kernel",
            "bias",
            "scale",
            "cls_token",
            "pos_embed",
        )
        assert scale == 0.5 ** (3 - expected_layer_id(path[1:])), path
    assert labels[("backbone", "cls_token")] == "backbone/weight"
    assert labels[("backbone", "blocks", "1", "norm2", "scale")] == "backbone/norm_bias"
    assert labels[("backbone", "blocks", "0", "mlp", "fc1", "kernel")] == "backbone/weight"


def test_layer_decay_needs_a_vit_backbone():
    with pytest.raises(ValueError, match=r"blocks/<i>.*\['bn', 'conv'\]"):
        layer_decay_scales(toy_params(), 0.75)
    with pytest.raises(ValueError, match="no backbone parameters"):
        vit_depth({"head": {"kernel": zeros(2, 2)}})
