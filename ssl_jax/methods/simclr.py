"""SimCLR (Chen et al., 2020): two views, a projection MLP, and the NT-Xent loss.

Both views go through the backbone in one batch of 2N, so BatchNorm statistics are those
of all 2N views of the global batch (SimCLR's "global BN", here without any collective
because the jitted step sees the global batch). https://arxiv.org/abs/2002.05709
"""

import jax.numpy as jnp
import ml_collections

from ssl_jax.encoder import make_backbone
from ssl_jax.losses import nt_xent
from ssl_jax.methods.base import Method
from ssl_jax.methods.common import (
    embed_views,
    embedding_std,
    make_two_view_method,
    mean_cosine,
    projector,
)


def make_simclr(config: ml_collections.ConfigDict, *, total_steps: int | None = None) -> Method:
    """SimCLR from the ``model``, ``method`` and ``augment`` config sections."""
    del total_steps
    backbone = make_backbone(config.model)
    temperature = float(config.method.temperature)
    parts = {"backbone": backbone, "projector": projector(config, backbone.feature_dim)}

    def objective(params, stats, views):
        (z1, z2), stats = embed_views(parts, ("backbone", "projector"), params, stats, views)
        metrics = {
            "pos_cosine": mean_cosine(z1, z2),
            "embedding_std": embedding_std(jnp.concatenate([z1, z2])),
        }
        return nt_xent(z1, z2, temperature=temperature), stats, metrics

    return make_two_view_method(config, "simclr", parts, objective)
