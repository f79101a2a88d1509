"""SimSiam (Chen & He, 2021): a predictor and a stop-gradient, no negatives, no target.

Symmetric ``0.5 * (D(p1, sg(z2)) + D(p2, sg(z1)))`` with ``D = simsiam_loss`` (negative
cosine); the stop-gradient is what prevents collapse. Projector: 3 layers ending in BN
without affine; predictor: a 2-layer bottleneck MLP. https://arxiv.org/abs/2011.10566
"""

import jax
import jax.numpy as jnp

from ssl_jax.losses import simsiam_loss
from ssl_jax.method import TWO_VIEWS, Method, method_factory
from ssl_jax.methods.common import embed_views, embedding_std, make_two_view_method
from ssl_jax.methods.networks import apply_chain, mlp_head


@method_factory("simsiam", views=TWO_VIEWS)
def make_simsiam(
    backbone,
    views,
    *,
    proj_hidden_dim: int = 2048,
    proj_dim: int = 2048,
    pred_hidden_dim: int = 512,
) -> Method:
    """SimSiam on ``backbone`` and the two-view function ``views``: a 3-layer projector
    (last BN without affine) and a 2-layer bottleneck predictor."""
    parts = {
        "backbone": backbone,
        "projector": mlp_head(
            backbone.feature_dim,
            proj_hidden_dim,
            proj_dim,
            num_layers=3,
            last_bn=True,
            last_bn_affine=False,
        ),
        "predictor": mlp_head(proj_dim, pred_hidden_dim, proj_dim),
    }

    def objective(params, stats, views):
        (z1, z2), stats = embed_views(parts, ("backbone", "projector"), params, stats, views)
        p, stats = apply_chain(parts, ("predictor",), params, stats, jnp.concatenate([z1, z2]))
        p1, p2 = jnp.split(p, 2)
        z1, z2 = jax.lax.stop_gradient(z1), jax.lax.stop_gradient(z2)
        value = 0.5 * (simsiam_loss(p1, z2) + simsiam_loss(p2, z1))
        return value, stats, {"embedding_std": embedding_std(jnp.concatenate([z1, z2]))}

    return make_two_view_method("simsiam", parts, views, objective, batch_terms="")
