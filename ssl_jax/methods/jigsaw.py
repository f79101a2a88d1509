"""Jigsaw puzzles (Noroozi & Favaro 2016): which permutation of a set shuffled an image's
3x3 tiles. https://arxiv.org/abs/1603.09246

The tiles go through the backbone as one batch (the paper's shared-weight "context-free
network"); their pooled features, concatenated in the shuffled order, go to a classifier
over the permutation set. The set (:func:`ssl_jax.pretext.jigsaw.hamming_permutations`, chosen
for large Hamming distances, deterministic given ``permutation_seed``) is part of the method
state, so every checkpoint of the run carries the set it was trained with.
"""

import jax.numpy as jnp

from ssl_jax.export import convert_input
from ssl_jax.method import ONE_RAW_VIEW, Method, method_factory
from ssl_jax.methods.common import make_init
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.pretext_task import make_classification_pretext
from ssl_jax.pretext.jigsaw import hamming_permutations, jigsaw_tiles


@method_factory("jigsaw", views=ONE_RAW_VIEW)
def make_jigsaw(
    backbone,
    views,
    *,
    input_spec: dict,
    num_permutations: int = 100,
    permutation_seed: int = 0,
    grid: int = 3,
    tile_size: int = 8,
    normalize_tiles: bool = True,
    head_hidden_dim: int = 1024,
) -> Method:
    """Jigsaw on ``backbone``: ``grid`` x ``grid`` tiles of side ``tile_size`` from the one
    view ``views(images_uint8, key) -> x`` in [0, 1], shuffled by one of
    ``num_permutations`` permutations; with ``normalize_tiles`` each tile is standardised on
    its own (the paper's guard against low-level statistics), else it gets the export's
    normalisation; a 2-layer classifier (hidden ``head_hidden_dim``) over the permutations.
    """
    tiles_per_image = grid * grid
    permutations = jnp.asarray(
        hamming_permutations(num_permutations, num_tiles=tiles_per_image, seed=permutation_seed),
        jnp.int32,
    )
    parts = {
        "backbone": backbone,
        "classifier": mlp_head(
            tiles_per_image * backbone.feature_dim, head_hidden_dim, num_permutations
        ),
    }
    init_parts = make_init(parts)

    def init(key):
        params, state = init_parts(key)
        return params, {**state, "permutations": permutations}

    def objective(params, method_state, x, key):
        tiles, labels = jigsaw_tiles(
            x,
            key,
            method_state["permutations"],
            grid=grid,
            tile_size=tile_size,
            normalize=normalize_tiles,
        )
        n = tiles.shape[0]
        flat = tiles.reshape(n * tiles_per_image, *tiles.shape[2:])
        if not normalize_tiles:
            flat = convert_input(flat, input_spec)
        stats = method_state["batch_stats"]
        features, backbone_stats = parts["backbone"].apply(
            params["backbone"], stats["backbone"], flat, train=True
        )
        logits, head_stats = parts["classifier"].apply(
            params["classifier"], stats["classifier"], features.reshape(n, -1), train=True
        )
        return logits, labels, {"backbone": backbone_stats, "classifier": head_stats}

    return make_classification_pretext("jigsaw", parts, views, objective, input_spec, init=init)
