"""MoCo v2 (He et al., 2020; Chen et al., 2020): a query encoder, a momentum key encoder, a queue.

Query encoder: backbone -> 2-layer MLP projector without BatchNorm (MoCo v2's "MLP head":
``method.proj_hidden_dim`` -> ``method.proj_dim``; the authors' ResNet-50 has 2048 -> 2048
-> 128). Key encoder:
the same parts with params in ``method_state["target"]`` (named as BYOL's target so the
export and tooling treat both alike) and its own BatchNorm statistics in
``method_state["target_batch_stats"]`` (a copy at init, then the running averages of the
key encoder's own train-mode forward passes; the authors momentum-update ``parameters()``
only, not BN buffers). After each optimizer step ``update_state`` moves the key encoder
``theta_k <- m theta_k + (1 - m) theta_q`` with a constant ``m`` (0.999, the authors) or a
cosine schedule from ``m`` to ``method.final_momentum`` (solo-learn's CIFAR MoCo v2+:
0.99 -> 0.999). The authors update before computing the keys of a step; updating after the
previous step's optimizer update is the same sequence.

Loss: ``info_nce(q, sg(k), sg(queue), temperature=T)`` with ``q`` the query of view 1 and
``k`` the key of view 2 (the authors' ``forward(im_q, im_k)``). With ``method.symmetric``
(solo-learn's MoCo v2+), also ``q2`` against ``k1``; each query direction has its own queue
(of view-2 and of view-1 keys), and the loss is the mean of the two terms. The queue
``method_state["queue"]`` is ``(Q, K, D)``, Q = 1 (2 if symmetric), holding L2-normalised
keys, randomly initialised on the sphere like the authors'. ``loss`` enqueues this step's
keys (stop-gradient) FIFO at ``method_state["queue_ptr"]`` and returns the new queue in its
new state: the queue a step reads holds only keys of earlier steps.

Global batch, global BN. Under global-view ``jax.jit`` the batch axis spans every device and
process, so the queue takes the keys of the WHOLE global batch each step (the authors'
``concat_all_gather``) and is identical on every device and process; ``K`` must be a
multiple of the global batch (``data.batch_size``), as the authors assert, so a push never
wraps mid-batch. The authors shuffle the key encoder's batch across GPUs ("shuffle BN") so
that per-GPU BatchNorm statistics cannot leak which key matches which query. Here BatchNorm
in the jitted step normalises over the global batch (of one view), which already prevents
that per-device leak: the explicit choice is global BN, as in MoCo v3 and SimCLR. It is not
bit-identical to per-device shuffle-BN (different normalisation groups); a per-device
variant would need ``jax.shard_map`` and is not implemented.

https://arxiv.org/abs/1911.05722, https://arxiv.org/abs/2003.04297
"""

import jax
import jax.numpy as jnp

from ssl_jax.losses import info_nce, l2_normalize
from ssl_jax.methods.base import TWO_VIEWS, Method, method_factory
from ssl_jax.methods.common import embedding_std, mean_cosine, two_views
from ssl_jax.methods.momentum import (
    check_export_network,
    make_momentum_schedule,
    momentum_update,
    target_export,
)
from ssl_jax.methods.networks import apply_chain, init_parts, mlp_head
from ssl_jax.methods.queue import enqueue

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
    queue_length = int(queue_length)
    if temperature <= 0:
        raise ValueError(f"method.temperature must be > 0, got {temperature}.")
    if queue_length <= 0 or (batch_size and queue_length % batch_size):
        multiple = max(1, -(-queue_length // (batch_size or 1))) * (batch_size or 1)
        raise ValueError(
            f"method.queue_length={queue_length} is not a positive multiple of "
            f"data.batch_size={batch_size}: each step enqueues the keys of the whole global "
            f"batch, FIFO (the authors assert K % batch == 0). Use e.g. {multiple}."
        )
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, proj_dim, use_bn=False),
    }
    num_queues = 2 if symmetric else 1

    def init(key):
        net_key, queue_key = jax.random.split(key)
        params, stats = init_parts(parts, net_key)
        queue = jax.random.normal(queue_key, (num_queues, queue_length, proj_dim))
        state = {
            "batch_stats": stats,
            "target": {name: params[name] for name in ENCODER_PARTS},
            "target_batch_stats": {name: stats[name] for name in ENCODER_PARTS},
            "queue": l2_normalize(queue),
            "queue_ptr": jnp.zeros((), jnp.int32),
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
        new_queue, new_ptr = enqueue(queue, method_state["queue_ptr"], jnp.stack(keys))
        new_state = {
            **method_state,
            "batch_stats": stats,
            "target_batch_stats": target_stats,
            "queue": new_queue,
            "queue_ptr": new_ptr,
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
