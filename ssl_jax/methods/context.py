"""Context prediction (Doersch, Gupta, Efros 2015): which of its 8 neighbours a patch is,
relative to a centre patch. https://arxiv.org/abs/1505.05192

Both patches go through the backbone as one batch (shared weights, the paper's "late-fusion"
pair network); their pooled features, concatenated, go to a classifier over the 8 positions.
The gap between patches, the jitter of their positions and the chromatic-aberration defence
(``chroma``) are the paper's guards against trivial shortcuts
(:func:`ssl_jax.pretext.context.context_pairs`).
"""

import jax.numpy as jnp

from ssl_jax.export import convert_input
from ssl_jax.method import ONE_RAW_VIEW, Method, method_factory
from ssl_jax.methods.networks import mlp_head
from ssl_jax.methods.pretext_task import make_classification_pretext
from ssl_jax.pretext.context import context_pairs


@method_factory("context", views=ONE_RAW_VIEW)
def make_context(
    backbone,
    views,
    *,
    input_spec: dict,
    patch_size: int = 8,
    gap: int = 2,
    jitter: int = 1,
    chroma: str = "drop",
    head_hidden_dim: int = 512,
) -> Method:
    """Context prediction on ``backbone``: a centre/neighbour pair of ``patch_size`` patches
    of the one view ``views(images_uint8, key) -> x`` in [0, 1], ``gap`` pixels apart,
    jittered by up to ``jitter``, with ``chroma`` (``none``, ``drop``, ``project``); a
    2-layer classifier (hidden ``head_hidden_dim``) on the two pooled features concatenated.
    """
    parts = {
        "backbone": backbone,
        "classifier": mlp_head(2 * backbone.feature_dim, head_hidden_dim, 8, num_layers=2),
    }
    geometry = dict(patch_size=patch_size, gap=gap, jitter=jitter, chroma=chroma)

    def objective(params, method_state, x, key):
        center, neighbor, labels = context_pairs(x, key, **geometry)
        stats = method_state["batch_stats"]
        patches = convert_input(jnp.concatenate([center, neighbor]), input_spec)
        features, backbone_stats = parts["backbone"].apply(
            params["backbone"], stats["backbone"], patches, train=True
        )
        pairs = jnp.concatenate(jnp.split(features, 2), axis=-1)
        logits, head_stats = parts["classifier"].apply(
            params["classifier"], stats["classifier"], pairs, train=True
        )
        return logits, labels, {"backbone": backbone_stats, "classifier": head_stats}

    return make_classification_pretext("context", parts, views, objective, input_spec)
