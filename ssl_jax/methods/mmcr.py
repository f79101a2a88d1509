"""MMCR (Yerxa et al., 2023): maximum manifold capacity representations.

The views of each image go through one backbone and projector (one batch, BatchNorm over
every view); :func:`~ssl_jax.losses.mmcr_loss` maximises the nuclear norm of the matrix of
the images' centroids (the mean of their views' normalised embeddings), minus an optional
``lambda_`` times the mean nuclear norm of each image's views.

Views: this method takes the library's two-view functions (``TWO_VIEWS``), so K = 2 views
per image. The paper's point is that more views help: its CIFAR runs use 40 views of 32
images, its ImageNet runs 8 views (and 2 as an ablation), and its ImageNet objective
(``MMCR_Momentum``) adds a momentum encoder; neither more views nor the momentum variant is
implemented here. The projector follows the authors' CIFAR model (Barlow Twins' head):
Linear without bias, BatchNorm, ReLU, then a final Linear (``proj_hidden_dim=512,
proj_dim=128``; their final Linear has no bias, this one keeps :class:`~ssl_jax.models.MLPHead`'s). https://arxiv.org/abs/2303.03307
"""

import jax.numpy as jnp

from ssl_jax.losses import l2_normalize, mmcr_loss, nuclear_norm
from ssl_jax.method import TWO_VIEWS, Method, method_factory
from ssl_jax.methods.common import embed_views, embedding_std, make_two_view_method, mean_cosine
from ssl_jax.methods.networks import mlp_head

BATCH_TERMS = "its loss is the nuclear norm of the matrix of every image's centroid"


@method_factory("mmcr", views=TWO_VIEWS)
def make_mmcr(
    backbone,
    views,
    *,
    lambda_: float = 0.0,
    proj_hidden_dim: int = 512,
    proj_dim: int = 128,
) -> Method:
    """MMCR on ``backbone`` and the two-view function ``views``: a 2-layer projector and
    :func:`~ssl_jax.losses.mmcr_loss` (weight ``lambda_`` on the local nuclear norms)."""
    if lambda_ < 0:
        raise ValueError(f"mmcr: method.lambda_={lambda_} must be >= 0 (0 in the paper).")
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, proj_dim),
    }

    def objective(params, stats, views):
        (z1, z2), stats = embed_views(parts, ("backbone", "projector"), params, stats, views)
        z = jnp.stack([z1, z2], axis=1)
        centroids = jnp.mean(l2_normalize(z), axis=1)
        metrics = {
            "pos_cosine": mean_cosine(z1, z2),
            "centroid_nuclear_norm": nuclear_norm(centroids),
            "embedding_std": embedding_std(jnp.concatenate([z1, z2])),
        }
        return mmcr_loss(z, lambda_=lambda_), stats, metrics

    return make_two_view_method("mmcr", parts, views, objective, batch_terms=BATCH_TERMS)
