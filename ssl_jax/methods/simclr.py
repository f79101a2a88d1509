"""SimCLR (Chen et al., 2020): two views, a projection MLP, and the NT-Xent loss.

Both views go through the backbone in one batch of 2N, so BatchNorm statistics are those
of all 2N views of the global batch (SimCLR's "global BN", here without any collective
because the jitted step sees the global batch). https://arxiv.org/abs/2002.05709
"""

import jax.numpy as jnp

from ssl_jax.losses import nt_xent
from ssl_jax.method import TWO_VIEWS, Method, method_factory
from ssl_jax.methods.common import embed_views, embedding_std, make_two_view_method, mean_cosine
from ssl_jax.methods.networks import mlp_head

BATCH_TERMS = "NT-Xent contrasts every view with the other examples of the batch (negatives)"


@method_factory("simclr", views=TWO_VIEWS)
def make_simclr(
    backbone,
    views,
    *,
    temperature: float = 0.2,
    proj_hidden_dim: int = 2048,
    proj_dim: int = 256,
) -> Method:
    """SimCLR on ``backbone`` (a :class:`~ssl_jax.models.ModuleDef`) and the two-view function
    ``views(images_uint8, key) -> (v1, v2)``: a 2-layer projector (BN, ReLU) and NT-Xent at
    ``temperature``."""
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, proj_dim),
    }

    def objective(params, stats, views):
        (z1, z2), stats = embed_views(parts, ("backbone", "projector"), params, stats, views)
        metrics = {
            "pos_cosine": mean_cosine(z1, z2),
            "embedding_std": embedding_std(jnp.concatenate([z1, z2])),
        }
        return nt_xent(z1, z2, temperature=temperature), stats, metrics

    return make_two_view_method("simclr", parts, views, objective, batch_terms=BATCH_TERMS)
