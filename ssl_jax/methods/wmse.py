"""W-MSE (Ermolov et al., 2021): whitened views compared by their MSE.

Two views through one backbone and projector (one batch, BatchNorm over both views); each
view's embeddings are whitened over random sub-batches of ``w_size`` images (Cholesky, the
same partition for both views, ``w_iter`` partitions) and the loss is the MSE of the
normalised whitened pairs (:func:`~ssl_jax.losses.wmse_loss`). The partitions are drawn from
the step's key (folded apart from the views' key), so 1 and 8 devices draw the same ones.

This is the paper's "W-MSE 2"; "W-MSE 4" (four views, six pairs) needs a four-view recipe
the library does not have. The projector follows the authors' ``model.py``: Linear,
BatchNorm, ReLU, Linear (``proj_hidden_dim=1024``, ``proj_dim=64`` on CIFAR).
https://arxiv.org/abs/2007.06346
"""

import jax
import jax.numpy as jnp

from ssl_jax.losses import wmse_loss
from ssl_jax.method import TWO_VIEWS, Method, method_factory, no_state_update
from ssl_jax.methods.common import (
    embed_views,
    embedding_std,
    make_init,
    mean_cosine,
    online_export,
    two_views,
)
from ssl_jax.methods.networks import mlp_head

BATCH_TERMS = "its whitening matrices are statistics of sub-batches of the batch"


@method_factory("wmse", views=TWO_VIEWS)
def make_wmse(
    backbone,
    views,
    *,
    w_size: int = 128,
    w_iter: int = 1,
    eps: float = 0.0,
    proj_hidden_dim: int = 1024,
    proj_dim: int = 64,
    batch_size: int | None = None,
) -> Method:
    """W-MSE on ``backbone`` and the two-view function ``views``: a 2-layer projector and
    :func:`~ssl_jax.losses.wmse_loss` over sub-batches of ``w_size`` images, ``w_iter``
    partitions, covariance shrinkage ``eps``. ``batch_size`` (the global batch) is checked to
    be a multiple of ``w_size``."""
    if batch_size is not None and batch_size % w_size:
        raise ValueError(
            f"wmse: method.w_size={w_size} must divide data.batch_size={batch_size}; use a "
            "divisor of the global batch."
        )
    if w_size <= proj_dim and eps == 0.0:
        raise ValueError(
            f"wmse: method.w_size={w_size} must exceed method.proj_dim={proj_dim} (a smaller "
            "sub-batch has a singular covariance); raise w_size or set method.eps > 0."
        )
    if w_iter < 1:
        raise ValueError(f"wmse: method.w_iter={w_iter} must be >= 1.")
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, proj_dim),
    }

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        view_key, whitening_key = jax.random.split(key)
        pair = two_views(views, batch["images"], view_key, "W-MSE")
        (z1, z2), stats = embed_views(
            parts, ("backbone", "projector"), params, method_state["batch_stats"], pair
        )
        value = wmse_loss(z1, z2, whitening_key, w_size=w_size, w_iter=w_iter, eps=eps)
        metrics = {
            "pos_cosine": mean_cosine(z1, z2),
            "embedding_std": embedding_std(jnp.concatenate([z1, z2])),
        }
        return value, ({"batch_stats": stats}, metrics)

    return Method(
        name="wmse",
        init=make_init(parts),
        loss=loss,
        update_state=no_state_update,
        export=online_export,
        backbone=backbone,
        batch_terms=BATCH_TERMS,
    )
