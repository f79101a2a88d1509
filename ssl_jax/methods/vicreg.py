"""VICReg (Bardes et al., 2022): invariance, variance and covariance regularisation.

A 3-layer expander; the three terms are logged as ``vicreg_invariance``,
``vicreg_variance`` and ``vicreg_covariance`` (unweighted). https://arxiv.org/abs/2105.04906
"""

import jax.numpy as jnp

from ssl_jax.losses import vicreg_loss, vicreg_terms
from ssl_jax.method import TWO_VIEWS, Method, method_factory
from ssl_jax.methods.common import embed_views, embedding_std, make_two_view_method
from ssl_jax.methods.networks import mlp_head

BATCH_TERMS = "its variance and covariance terms are statistics of the batch"


@method_factory("vicreg", views=TWO_VIEWS)
def make_vicreg(
    backbone,
    views,
    *,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    proj_hidden_dim: int = 8192,
    proj_dim: int = 8192,
) -> Method:
    """VICReg on ``backbone`` and the two-view function ``views``: a 3-layer expander and
    the weighted invariance, variance and covariance terms."""
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, proj_dim, num_layers=3),
    }
    coeffs = dict(sim_coeff=sim_coeff, std_coeff=std_coeff, cov_coeff=cov_coeff)

    def objective(params, stats, views):
        (z1, z2), stats = embed_views(parts, ("backbone", "projector"), params, stats, views)
        value = vicreg_loss(z1, z2, **coeffs)
        metrics = {f"vicreg_{k}": v for k, v in vicreg_terms(z1, z2).items()}
        metrics["embedding_std"] = embedding_std(jnp.concatenate([z1, z2]))
        return value, stats, metrics

    return make_two_view_method("vicreg", parts, views, objective, batch_terms=BATCH_TERMS)
