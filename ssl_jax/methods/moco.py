"""MoCo v2 (He et al., 2020; Chen et al., 2020): a query encoder, a momentum key encoder, a queue.

Query encoder: backbone -> 2-layer MLP projector without BatchNorm (``proj_hidden_dim`` ->
``proj_dim``; the authors' ResNet-50: 2048 -> 2048 -> 128). Key encoder: the same parts with
params in ``method_state["target"]`` and its own BatchNorm statistics in
``method_state["target_batch_stats"]`` (running averages of its own train-mode passes; the
authors momentum-update ``parameters()`` only). ``update_state`` moves it by
``theta_k <- m theta_k + (1 - m) theta_q``, ``m`` constant (0.999, the authors) or cosine
from ``momentum`` to ``final_momentum`` (solo-learn's CIFAR MoCo v2+: 0.99 -> 0.999). The
authors update at the start of a step, before its keys: the same sequence of key encoders.

Loss: ``info_nce(q, sg(k), sg(queue), temperature=T)``, ``q`` the query of view 1, ``k`` the
key of view 2 (the authors' ``forward(im_q, im_k)``). ``symmetric`` (solo-learn's MoCo v2+)
adds ``q2`` against ``k1`` with a second queue, and the loss is the mean of the two terms.
The queue ``(Q, K, D)`` (Q = 1, or 2 if symmetric; :mod:`ssl_jax.methods.queue`) holds
L2-normalised keys, starts as random points on the sphere like the authors', and ``loss``
pushes this step's keys of the whole global batch after using it: a step reads only keys of
earlier steps. ``K`` must be a multiple of the global batch, as the authors assert.

BatchNorm normalises over the global batch of one view ("global BN", as MoCo v3 and
SimCLR), which already prevents the per-device leak the authors' shuffle-BN guards against;
it is not bit-identical to shuffle-BN (other normalisation groups), which would need
``jax.shard_map``.

https://arxiv.org/abs/1911.05722, https://arxiv.org/abs/2003.04297
"""

import jax
import jax.numpy as jnp

from ssl_jax.losses import info_nce, l2_normalize
from ssl_jax.method import TWO_VIEWS, Method, method_factory
from ssl_jax.methods.common import embedding_std, mean_cosine, two_views
from ssl_jax.methods.momentum import (
    check_export_network,
    init_target,
    make_momentum_schedule,
    momentum_update,
    target_export,
)
from ssl_jax.methods.networks import apply_chain, init_parts, mlp_head
from ssl_jax.methods.queue import check_queue_length, make_queue, push

ENCODER_PARTS = ("backbone", "projector")


@method_factory("mocov2", views=TWO_VIEWS)
def make_mocov2(
    backbone,
    views,
    *,
    temperature: float = 0.2,
    proj_hidden_dim: int = 2048,
    proj_dim: int = 128,
    queue_length: int = 65536,
    momentum: float = 0.999,
    momentum_schedule: str = "constant",
    final_momentum: float = 1.0,
    symmetric: bool = False,
    total_steps: int | None = None,
    batch_size: int | None = None,
    export_network: str = "online",
) -> Method:
    """MoCo v2 on ``backbone`` and the two-view function ``views``.

    ``momentum_schedule="cosine"`` (from ``momentum`` to ``final_momentum``) needs
    ``total_steps``. ``batch_size`` (the global batch, optional) checks at build time that
    ``queue_length`` is a multiple of it; the trace checks it again either way.
    """
    schedule = make_momentum_schedule(
        momentum_schedule,
        momentum=momentum,
        final_momentum=final_momentum,
        total_steps=total_steps,
        method="MoCo v2",
    )
    network = check_export_network(export_network, "MoCo v2", "momentum encoder")
    temperature = float(temperature)
    symmetric = bool(symmetric)
    queue_length = check_queue_length(queue_length, batch_size, "MoCo v2")
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, proj_dim, use_bn=False),
    }
    num_queues = 2 if symmetric else 1

    def init(key):
        net_key, queue_key = jax.random.split(key)
        params, stats = init_parts(parts, net_key)
        state = {
            "batch_stats": stats,
            **init_target(params, stats, ENCODER_PARTS),
            **make_queue(num_queues, queue_length, proj_dim, key=queue_key),
        }
        return params, state

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        v1, v2 = two_views(views, batch["images"], key, "MoCo v2")
        query_views, key_views = ((v1, v2), (v2, v1)) if symmetric else ((v1,), (v2,))
        stats = method_state["batch_stats"]
        queries = []
        for v in query_views:
            q, stats = apply_chain(parts, ENCODER_PARTS, params, stats, v)
            queries.append(q)
        target = jax.lax.stop_gradient(method_state["target"])
        target_stats = method_state["target_batch_stats"]
        keys = []
        for v in key_views:
            k, target_stats = apply_chain(parts, ENCODER_PARTS, target, target_stats, v)
            keys.append(l2_normalize(jax.lax.stop_gradient(k)))
        queue = jax.lax.stop_gradient(method_state["queue"])
        terms = [
            info_nce(q, k, queue[i], temperature=temperature)
            for i, (q, k) in enumerate(zip(queries, keys, strict=True))
        ]
        value = sum(terms) / len(terms)
        new_state = {
            **method_state,
            "batch_stats": stats,
            "target_batch_stats": target_stats,
            **push({**method_state, "queue": queue}, jnp.stack(keys)),
        }
        metrics = {
            "pos_cosine": mean_cosine(queries[0], keys[0]),
            "embedding_std": embedding_std(queries[0]),
        }
        return value, (new_state, metrics)

    return Method(
        name="mocov2",
        init=init,
        loss=loss,
        update_state=momentum_update(schedule, ENCODER_PARTS),
        export=target_export(network),
        backbone=backbone,
        network=network,
        batch_terms="the batch's keys are contrasted with a queue and enqueued every step",
    )
