"""Barlow Twins (Zbontar et al., 2021): make the views' cross-correlation the identity.

A 3-layer projector (the authors' 8192-8192-8192 on ImageNet); the loss standardises each
embedding dimension over the global batch. ``method.scale_loss`` (default 1) multiplies the
loss, as solo-learn's ``scale_loss`` (0.1 in its CIFAR recipe): under LARS it changes the
steps of the parameters LARS does not adapt (biases, norms), of clipped tensors, and
weight decay's share of each update.
https://arxiv.org/abs/2103.03230
"""

import jax.numpy as jnp
import ml_collections

from ssl_jax.encoder import make_backbone
from ssl_jax.losses import barlow_twins_loss
from ssl_jax.methods.base import Method
from ssl_jax.methods.common import embed_views, embedding_std, make_two_view_method, projector


def make_barlow_twins(
    config: ml_collections.ConfigDict, *, total_steps: int | None = None
) -> Method:
    """Barlow Twins from the ``model``, ``method`` (dims, ``lambda_``, optional ``scale_loss``)
    and ``augment`` sections."""
    del total_steps
    backbone = make_backbone(config.model)
    parts = {
        "backbone": backbone,
        "projector": projector(config, backbone.feature_dim, num_layers=3),
    }
    lambda_ = float(config.method.lambda_)
    scale = float(config.method.get("scale_loss", 1.0))

    def objective(params, stats, views):
        (z1, z2), stats = embed_views(parts, ("backbone", "projector"), params, stats, views)
        value = scale * barlow_twins_loss(z1, z2, lambda_=lambda_)
        return value, stats, {"embedding_std": embedding_std(jnp.concatenate([z1, z2]))}

    return make_two_view_method(config, "barlow_twins", parts, objective)
