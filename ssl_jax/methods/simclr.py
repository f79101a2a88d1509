"""SimCLR (Chen et al., 2020): two views, a projection MLP, and the NT-Xent loss.

Both views go through the backbone in one batch of 2N, so BatchNorm statistics are those
of all 2N views of the global batch (SimCLR's "global BN", here without any collective
because the jitted step sees the global batch). https://arxiv.org/abs/2002.05709

``loss="dcl"`` or ``"dclw"`` trains the same networks with the decoupled contrastive loss of
Yeh et al. 2022 (:func:`~ssl_jax.losses.dcl_loss`, :func:`~ssl_jax.losses.dclw_loss` with
``sigma``): DCL is SimCLR with its loss changed, nothing else (configs/dcl_cifar10.py).
"""

import jax.numpy as jnp

from ssl_jax.losses import dcl_loss, dclw_loss, nt_xent
from ssl_jax.method import TWO_VIEWS, Method, method_factory
from ssl_jax.methods.common import embed_views, embedding_std, make_two_view_method, mean_cosine
from ssl_jax.methods.networks import mlp_head

BATCH_TERMS = "NT-Xent contrasts every view with the other examples of the batch (negatives)"
LOSSES = ("nt_xent", "dcl", "dclw")


@method_factory("simclr", views=TWO_VIEWS)
def make_simclr(
    backbone,
    views,
    *,
    temperature: float = 0.2,
    proj_hidden_dim: int = 2048,
    proj_dim: int = 256,
    loss: str = "nt_xent",
    sigma: float = 0.5,
) -> Method:
    """SimCLR on ``backbone`` (a :class:`~ssl_jax.models.ModuleDef`) and the two-view function
    ``views(images_uint8, key) -> (v1, v2)``: a 2-layer projector (BN, ReLU) and NT-Xent at
    ``temperature`` (``loss="nt_xent"``), or DCL / DCLW (``"dcl"``, ``"dclw"``; ``sigma`` is
    DCLW's weighting width)."""
    if loss not in LOSSES:
        raise ValueError(f"simclr: method.loss={loss!r} is not one of {LOSSES}.")
    if loss == "dclw" and sigma <= 0:
        raise ValueError(f"simclr: method.sigma={sigma} must be > 0 for loss='dclw'.")
    contrast = {
        "nt_xent": lambda a, b: nt_xent(a, b, temperature=temperature),
        "dcl": lambda a, b: dcl_loss(a, b, temperature=temperature),
        "dclw": lambda a, b: dclw_loss(a, b, temperature=temperature, sigma=sigma),
    }[loss]
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, proj_dim),
    }

    def objective(params, stats, views):
        (z1, z2), stats = embed_views(parts, ("backbone", "projector"), params, stats, views)
        metrics = {
            "pos_cosine": mean_cosine(z1, z2),
            "embedding_std": embedding_std(jnp.concatenate([z1, z2])),
        }
        return contrast(z1, z2), stats, metrics

    return make_two_view_method("simclr", parts, views, objective, batch_terms=BATCH_TERMS)
