"""BYOL (Grill et al., 2020): an online network predicts an EMA target's projection.

Online: backbone -> projector -> predictor. Target: backbone -> projector, an exponential
moving average of the online weights held in ``method_state["target"]`` (an extra param
tree of the same structure, never trained by gradients). The loss is symmetric:
``byol_loss(p1, sg(z2')) + byol_loss(p2, sg(z1'))`` as in the authors' code. After each
optimizer step the target moves with the cosine momentum schedule
``tau_k = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2``. https://arxiv.org/abs/2006.07733
"""

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.augment import make_multiview_fn
from ssl_jax.encoder import make_backbone
from ssl_jax.losses import byol_loss
from ssl_jax.methods.base import Method
from ssl_jax.methods.common import embedding_std
from ssl_jax.methods.momentum import (
    cosine_momentum,
    export_network,
    momentum_update,
    target_export,
)
from ssl_jax.methods.networks import apply_chain, init_parts, mlp_head
from ssl_jax.methods.views import view_specs_from_config

TARGET_PARTS = ("backbone", "projector")


def make_byol(config: ml_collections.ConfigDict, *, total_steps: int | None = None) -> Method:
    """BYOL from the ``model``, ``method``, ``augment`` and ``export`` config sections."""
    if total_steps is None:
        raise ValueError("BYOL needs total_steps for its cosine target-momentum schedule.")
    hp = config.method
    backbone = make_backbone(config.model)
    specs = view_specs_from_config(config.augment)
    if len(specs) != 2:
        raise ValueError(f"BYOL needs a two-view augment recipe, got {len(specs)} views.")
    views = make_multiview_fn(specs)
    network = export_network(config, "BYOL", "EMA target")
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, hp.proj_hidden_dim, hp.proj_dim),
        "predictor": mlp_head(hp.proj_dim, hp.pred_hidden_dim, hp.proj_dim),
    }
    base_momentum = float(hp.base_momentum)

    def init(key, sample_batch=None):
        del sample_batch
        params, stats = init_parts(parts, key)
        target = {name: params[name] for name in TARGET_PARTS}
        target_stats = {name: stats[name] for name in TARGET_PARTS}
        state = {"batch_stats": stats, "target": target, "target_batch_stats": target_stats}
        return params, state

    def loss(params, method_state, batch, key):
        v1, v2 = views(batch["images"], key)
        x = jnp.concatenate([v1, v2])
        p, stats = apply_chain(
            parts, ("backbone", "projector", "predictor"), params, method_state["batch_stats"], x
        )
        target = jax.lax.stop_gradient(method_state["target"])
        z, target_stats = apply_chain(
            parts, TARGET_PARTS, target, method_state["target_batch_stats"], x
        )
        z = jax.lax.stop_gradient(z)
        p1, p2 = jnp.split(p, 2)
        z1, z2 = jnp.split(z, 2)
        value = byol_loss(p1, z2) + byol_loss(p2, z1)
        new_state = {**method_state, "batch_stats": stats, "target_batch_stats": target_stats}
        metrics = {"embedding_std": embedding_std(p)}
        return value, (new_state, metrics)

    update_state = momentum_update(
        lambda step: cosine_momentum(step, base_momentum=base_momentum, total_steps=total_steps),
        TARGET_PARTS,
    )

    return Method(
        name="byol",
        init=init,
        loss=loss,
        update_state=update_state,
        export=target_export(network),
        backbone=backbone,
    )
