"""Barlow Twins (Zbontar et al., 2021): make the views' cross-correlation the identity.

A 3-layer projector (the authors' 8192-8192-8192 on ImageNet); the loss standardises each
embedding dimension over the global batch. ``method.scale_loss`` (default 1) multiplies the
loss, as solo-learn's ``scale_loss`` (0.1 in its CIFAR recipe): under LARS it changes the
steps of the parameters LARS does not adapt (biases, norms), of clipped tensors, and
weight decay's share of each update.
https://arxiv.org/abs/2103.03230
"""

import jax.numpy as jnp

from ssl_jax.losses import barlow_twins_loss
from ssl_jax.method import TWO_VIEWS, Method, method_factory
from ssl_jax.methods.common import embed_views, embedding_std, make_two_view_method
from ssl_jax.methods.networks import mlp_head

BATCH_TERMS = "its cross-correlation matrix is computed over the batch"


@method_factory("barlow_twins", views=TWO_VIEWS)
def make_barlow_twins(
    backbone,
    views,
    *,
    lambda_: float = 0.0051,
    scale_loss: float = 1.0,
    proj_hidden_dim: int = 8192,
    proj_dim: int = 8192,
) -> Method:
    """Barlow Twins on ``backbone`` and the two-view function ``views``: a 3-layer projector,
    ``scale_loss * barlow_twins_loss(z1, z2, lambda_=lambda_)``."""
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, proj_dim, num_layers=3),
    }
    scale = float(scale_loss)

    def objective(params, stats, views):
        (z1, z2), stats = embed_views(parts, ("backbone", "projector"), params, stats, views)
        value = scale * barlow_twins_loss(z1, z2, lambda_=lambda_)
        return value, stats, {"embedding_std": embedding_std(jnp.concatenate([z1, z2]))}

    return make_two_view_method("barlow_twins", parts, views, objective, batch_terms=BATCH_TERMS)
