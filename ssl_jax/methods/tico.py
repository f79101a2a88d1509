"""TiCo (Zhu et al., 2022): transformation invariance and covariance contrast.

Two views through one backbone and projector (one batch of 2N, as SimCLR); the loss makes
the first view's embedding agree with the second's and penalises its energy along a running
second-moment matrix ``C`` of the first views' normalised embeddings, kept in the method
state (``method_state["covariance"]``, ``(proj_dim, proj_dim)``, zeros at init). ``C`` depends
on this step's activations, so ``loss`` returns its update
``C_t = beta C_{t-1} + (1 - beta) z1^T z1 / N`` (the state rule of :mod:`ssl_jax.method`) and
``update_state`` is :func:`~ssl_jax.method.no_state_update`.

The loss is the paper's Algorithm 1, one direction (view 1 is contrasted, view 2 is the
target of the invariance), both views through the same online network. lightly's ImageNet
benchmark of TiCo puts the second view through a BYOL-style momentum encoder instead; that
variant is not implemented here. The projector (2 layers, 4096 hidden, 256 out) follows
lightly's ``TiCoProjectionHead``; the paper's exact head is unverified.
https://arxiv.org/abs/2206.10698
"""

import jax.numpy as jnp

from ssl_jax.losses import tico_loss
from ssl_jax.method import TWO_VIEWS, Method, method_factory, no_state_update
from ssl_jax.methods.common import (
    embed_views,
    embedding_std,
    mean_cosine,
    online_export,
    two_views,
)
from ssl_jax.methods.networks import init_parts, mlp_head

BATCH_TERMS = "its covariance contrast uses the second moment of the batch's first views"


@method_factory("tico", views=TWO_VIEWS)
def make_tico(
    backbone,
    views,
    *,
    beta: float = 0.9,
    rho: float = 20.0,
    proj_hidden_dim: int = 4096,
    proj_dim: int = 256,
) -> Method:
    """TiCo on ``backbone`` and the two-view function ``views``: a 2-layer projector and
    :func:`~ssl_jax.losses.tico_loss` with covariance momentum ``beta`` and weight ``rho``."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"tico: method.beta={beta} must be in [0, 1) (0.9 in the paper).")
    if rho < 0:
        raise ValueError(f"tico: method.rho={rho} must be >= 0 (20 in the paper).")
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, proj_dim),
    }

    def init(key):
        params, stats = init_parts(parts, key)
        return params, {"batch_stats": stats, "covariance": jnp.zeros((proj_dim, proj_dim))}

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        pair = two_views(views, batch["images"], key, "TiCo")
        (z1, z2), stats = embed_views(
            parts, ("backbone", "projector"), params, method_state["batch_stats"], pair
        )
        value, covariance = tico_loss(z1, z2, method_state["covariance"], beta=beta, rho=rho)
        new_state = {"batch_stats": stats, "covariance": covariance.astype(jnp.float32)}
        metrics = {
            "pos_cosine": mean_cosine(z1, z2),
            "covariance_trace": jnp.trace(covariance),
            "embedding_std": embedding_std(jnp.concatenate([z1, z2])),
        }
        return value, (new_state, metrics)

    return Method(
        name="tico",
        init=init,
        loss=loss,
        update_state=no_state_update,
        export=online_export,
        backbone=backbone,
        batch_terms=BATCH_TERMS,
    )
