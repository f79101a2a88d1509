"""NNCLR (Dwibedi et al., 2021): the nearest neighbour in a support set is the positive.

Online network: backbone -> projector (3 layers, BatchNorm after each, the last one too) ->
predictor (2 layers). ``z`` are projections, ``p = predictor(z)`` predictions. The support
set ``Q`` is a FIFO queue of L2-normalised projections of earlier batches
(:mod:`ssl_jax.methods.queue`, one queue ``(1, K, D)``, random points on the sphere at init
as solo-learn's), and ``NN(z, Q) = argmax_{q in Q} cos(z, q)`` replaces ``z`` as the anchor.
The loss is the paper's eq. 1 with the predictor (its default) and symmetrised::

    L = (contrastive_loss(NN(z1), p2) + contrastive_loss(NN(z2), p1)) / 2

at temperature ``tau`` (0.1), the other predictions of the global batch the negatives.
``NN`` is a row of the support set, so no gradient flows through it: ``z`` is trained
through ``p`` only. ``loss`` pushes this step's ``z1`` (normalised, the whole global batch)
after reading the support set, as the reference implementations (solo-learn, lightly) do:
a step's neighbours are projections of earlier steps. ``K`` must be a multiple of the global
batch (98,304 = 24 x 4096 in the paper). Both views go through the network as one batch
(BatchNorm over the 2N views, as the library's other two-view methods).
https://arxiv.org/abs/2104.14548
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ssl_jax.losses import contrastive_loss, l2_normalize
from ssl_jax.method import TWO_VIEWS, Method, method_factory, no_state_update
from ssl_jax.methods.common import embed_views, embedding_std, mean_cosine, online_export, two_views
from ssl_jax.methods.networks import init_parts, mlp_head
from ssl_jax.methods.queue import check_queue_length, make_queue, push


def nearest_neighbours(z: ArrayLike, support: ArrayLike) -> jax.Array:
    """``(N, D)`` rows of ``support`` ``(K, D)``: for each row of ``z`` ``(N, D)`` the one of
    highest cosine similarity (``support`` rows L2-normalised), without gradient."""
    support = jax.lax.stop_gradient(jnp.asarray(support))
    index = jnp.argmax(l2_normalize(jax.lax.stop_gradient(z)) @ support.T, axis=-1)
    return support[index]


@method_factory("nnclr", views=TWO_VIEWS)
def make_nnclr(
    backbone,
    views,
    *,
    temperature: float = 0.1,
    proj_hidden_dim: int = 2048,
    proj_dim: int = 256,
    pred_hidden_dim: int = 4096,
    queue_length: int = 98304,
    proj_last_bn_affine: bool = True,
    batch_size: int | None = None,
) -> Method:
    """NNCLR on ``backbone`` and the two-view function ``views``: a support set of
    ``queue_length`` projections (a multiple of the global ``batch_size``, checked here when
    given and at trace time), InfoNCE at ``temperature``.

    ``proj_last_bn_affine``: whether the projector's last BatchNorm has a scale and bias (as
    solo-learn's). Its bias gets an analytically zero gradient (the predictor's first
    BatchNorm removes a constant shift of ``z``), so it moves by float noise only; that noise
    reaches the loss through the support set, which stores ``z``."""
    temperature = float(temperature)
    queue_length = check_queue_length(queue_length, batch_size, "NNCLR")
    parts = {
        "backbone": backbone,
        "projector": mlp_head(
            backbone.feature_dim,
            proj_hidden_dim,
            proj_dim,
            num_layers=3,
            last_bn=True,
            last_bn_affine=proj_last_bn_affine,
        ),
        "predictor": mlp_head(proj_dim, pred_hidden_dim, proj_dim),
    }

    def init(key):
        net_key, queue_key = jax.random.split(key)
        params, stats = init_parts(parts, net_key)
        return params, {
            "batch_stats": stats,
            **make_queue(1, queue_length, proj_dim, key=queue_key),
        }

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        pair = two_views(views, batch["images"], key, "NNCLR")
        stats = method_state["batch_stats"]
        (z1, z2), stats = embed_views(parts, ("backbone", "projector"), params, stats, pair)
        (p1, p2), stats = embed_views(parts, ("predictor",), params, stats, (z1, z2))
        support = jax.lax.stop_gradient(method_state["queue"][0])
        nn1, nn2 = nearest_neighbours(z1, support), nearest_neighbours(z2, support)
        value = 0.5 * (
            contrastive_loss(nn1, p2, temperature=temperature)
            + contrastive_loss(nn2, p1, temperature=temperature)
        )
        keys = l2_normalize(jax.lax.stop_gradient(z1))[None]
        new_state = {**method_state, "batch_stats": stats, **push(method_state, keys)}
        metrics = {
            "nn_cosine": mean_cosine(z1, nn1),
            "embedding_std": embedding_std(z1),
        }
        return value, (new_state, metrics)

    return Method(
        name="nnclr",
        init=init,
        loss=loss,
        update_state=no_state_update,
        export=online_export,
        backbone=backbone,
        batch_terms="the batch's other predictions are negatives, and it is pushed into the "
        "support set every step",
    )
