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

from ssl_jax.losses import byol_loss
from ssl_jax.method import TWO_VIEWS, Method, method_factory
from ssl_jax.methods.common import embedding_std, two_views
from ssl_jax.methods.momentum import (
    check_export_network,
    cosine_momentum,
    init_target,
    momentum_update,
    target_export,
)
from ssl_jax.methods.networks import apply_chain, init_parts, mlp_head

TARGET_PARTS = ("backbone", "projector")


@method_factory("byol", views=TWO_VIEWS)
def make_byol(
    backbone,
    views,
    *,
    total_steps: int,
    base_momentum: float = 0.996,
    proj_hidden_dim: int = 4096,
    proj_dim: int = 256,
    pred_hidden_dim: int = 4096,
    export_network: str = "online",
) -> Method:
    """BYOL on ``backbone`` and the two-view function ``views``; ``total_steps`` is the
    length of the run, for the cosine target-momentum schedule from ``base_momentum`` to 1.
    ``export_network``: ``"online"`` or ``"target"`` backbone."""
    if total_steps is None:
        raise ValueError("BYOL needs total_steps for its cosine target-momentum schedule.")
    network = check_export_network(export_network, "BYOL", "EMA target")
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, proj_dim),
        "predictor": mlp_head(proj_dim, pred_hidden_dim, proj_dim),
    }
    base_momentum = float(base_momentum)

    def init(key):
        params, stats = init_parts(parts, key)
        state = {"batch_stats": stats, **init_target(params, stats, TARGET_PARTS)}
        return params, state

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        v1, v2 = two_views(views, batch["images"], key, "BYOL")
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
        network=network,
        batch_terms="",  # a per-example regression (its heads' BatchNorm is checked apart)
    )
