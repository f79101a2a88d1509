"""VICReg (Bardes et al., 2022): invariance, variance and covariance regularisation.

A 3-layer expander; the three terms are logged as ``vicreg_invariance``,
``vicreg_variance`` and ``vicreg_covariance`` (unweighted). https://arxiv.org/abs/2105.04906
"""

import jax.numpy as jnp
import ml_collections

from ssl_jax.encoder import make_backbone
from ssl_jax.losses import vicreg_loss, vicreg_terms
from ssl_jax.methods.base import Method
from ssl_jax.methods.common import embed_views, embedding_std, make_two_view_method, projector


def make_vicreg(config: ml_collections.ConfigDict, *, total_steps: int | None = None) -> Method:
    """VICReg from the ``model``, ``method`` (dims, coefficients) and ``augment`` sections."""
    del total_steps
    backbone = make_backbone(config.model)
    parts = {
        "backbone": backbone,
        "projector": projector(config, backbone.feature_dim, num_layers=3),
    }
    hp = config.method
    coeffs = dict(sim_coeff=hp.sim_coeff, std_coeff=hp.std_coeff, cov_coeff=hp.cov_coeff)

    def objective(params, stats, views):
        (z1, z2), stats = embed_views(parts, ("backbone", "projector"), params, stats, views)
        value = vicreg_loss(z1, z2, **coeffs)
        metrics = {f"vicreg_{k}": v for k, v in vicreg_terms(z1, z2).items()}
        metrics["embedding_std"] = embedding_std(jnp.concatenate([z1, z2]))
        return value, stats, metrics

    return make_two_view_method(config, "vicreg", parts, objective)
