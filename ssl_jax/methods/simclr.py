"""SimCLR (Chen et al., 2020): two views, a projection MLP, and the NT-Xent loss.

Both views go through the backbone in one batch of 2N, so BatchNorm statistics are those
of all 2N views of the global batch (SimCLR's "global BN", here without any collective
because the jitted step sees the global batch). https://arxiv.org/abs/2002.05709
"""

import jax.numpy as jnp
import ml_collections

from ssl_jax.encoder import make_backbone
from ssl_jax.losses import nt_xent
from ssl_jax.methods.base import Method, no_state_update
from ssl_jax.methods.common import (
    embed_views,
    embedding_std,
    make_init,
    online_export,
    require_online_export,
    two_view_fn,
)
from ssl_jax.methods.networks import mlp_head


def make_simclr(config: ml_collections.ConfigDict, *, total_steps: int | None = None) -> Method:
    """SimCLR from the ``model``, ``method`` and ``augment`` config sections."""
    del total_steps
    backbone = make_backbone(config.model)
    hp = config.method
    temperature = float(hp.temperature)
    views = two_view_fn(config, "SimCLR")
    require_online_export(config, "SimCLR")
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, hp.proj_hidden_dim, hp.proj_dim),
    }

    def loss(params, method_state, batch, key):
        (z1, z2), stats = embed_views(
            parts,
            ("backbone", "projector"),
            params,
            method_state["batch_stats"],
            views(batch["images"], key),
        )
        value = nt_xent(z1, z2, temperature=temperature)
        n1 = z1 / jnp.linalg.norm(z1, axis=-1, keepdims=True).clip(1e-12)
        n2 = z2 / jnp.linalg.norm(z2, axis=-1, keepdims=True).clip(1e-12)
        metrics = {
            "pos_cosine": jnp.mean(jnp.sum(n1 * n2, axis=-1)),
            "embedding_std": embedding_std(jnp.concatenate([z1, z2])),
        }
        return value, ({"batch_stats": stats}, metrics)

    return Method(
        name="simclr",
        init=make_init(parts),
        loss=loss,
        update_state=no_state_update,
        export=online_export,
        backbone=backbone,
    )
