"""MoCo v3 (Chen, Xie, He, 2021): a predictor on the base encoder, a momentum encoder, no queue.

Base encoder: backbone -> projector -> predictor. Projector: ``method.proj_num_layers``
Linear layers (the authors' code: 2 for ResNet, 3 for ViT; hidden 4096, out 256), BN + ReLU
after the hidden ones, BN without affine after the last. Predictor: 2 layers (4096 hidden),
last BN without affine (``MLPHead(num_layers, last_bn=True, last_bn_affine=False)``). Momentum
encoder: backbone -> projector with params in ``method_state["target"]`` (BYOL's name) and its
own BN statistics in ``method_state["target_batch_stats"]``; ``update_state`` moves it
towards the base encoder with a cosine momentum from ``method.momentum`` (0.99 in the
authors' ``--moco-m-cos`` runs, 0.996 for the 1000-epoch ResNet-50) to
``method.final_momentum`` (1).

Loss (the authors' ``forward``): ``ctr(q1, k2) + ctr(q2, k1)`` with :func:`moco_v3_ctr`, in
which each query's positive is the key of the same image and its negatives are the keys of the
other images of the global batch. The authors gather the keys from all GPUs
(``concat_all_gather``); under global-view ``jax.jit`` the batch axis already spans every
device, so no collective is written here. Each view goes through each network separately, as
in the authors' code, so BatchNorm normalises over one view of the global batch ("global BN",
the authors' SyncBN).

The authors' ``--stop-grad-conv1`` (a frozen random patch projection for ViT) is not
implemented. https://arxiv.org/abs/2104.02057
"""

import jax
import jax.numpy as jnp

from ssl_jax.losses import moco_v3_ctr
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

ENCODER_PARTS = ("backbone", "projector")
ONLINE_PARTS = (*ENCODER_PARTS, "predictor")


@method_factory("mocov3", views=TWO_VIEWS)
def make_mocov3(
    backbone,
    views,
    *,
    temperature: float = 0.2,
    proj_hidden_dim: int = 4096,
    proj_dim: int = 256,
    proj_num_layers: int = 3,
    pred_hidden_dim: int = 4096,
    momentum: float = 0.99,
    momentum_schedule: str = "constant",
    final_momentum: float = 1.0,
    total_steps: int | None = None,
    export_network: str = "online",
) -> Method:
    """MoCo v3 on ``backbone`` and the two-view function ``views``; the cosine momentum
    schedule (the authors' ``--moco-m-cos``) needs ``total_steps``."""
    schedule = make_momentum_schedule(
        momentum_schedule,
        momentum=momentum,
        final_momentum=final_momentum,
        total_steps=total_steps,
        method="MoCo v3",
    )
    network = check_export_network(export_network, "MoCo v3", "momentum encoder")
    temperature = float(temperature)
    head = dict(last_bn=True, last_bn_affine=False)
    parts = {
        "backbone": backbone,
        "projector": mlp_head(
            backbone.feature_dim,
            proj_hidden_dim,
            proj_dim,
            num_layers=int(proj_num_layers),
            **head,
        ),
        "predictor": mlp_head(proj_dim, pred_hidden_dim, proj_dim, num_layers=2, **head),
    }

    def init(key):
        params, stats = init_parts(parts, key)
        state = {
            "batch_stats": stats,
            **init_target(params, stats, ENCODER_PARTS),
        }
        return params, state

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        v1, v2 = two_views(views, batch["images"], key, "MoCo v3")
        stats = method_state["batch_stats"]
        q1, stats = apply_chain(parts, ONLINE_PARTS, params, stats, v1)
        q2, stats = apply_chain(parts, ONLINE_PARTS, params, stats, v2)
        target = jax.lax.stop_gradient(method_state["target"])
        target_stats = method_state["target_batch_stats"]
        k1, target_stats = apply_chain(parts, ENCODER_PARTS, target, target_stats, v1)
        k2, target_stats = apply_chain(parts, ENCODER_PARTS, target, target_stats, v2)
        k1, k2 = jax.lax.stop_gradient(k1), jax.lax.stop_gradient(k2)
        value = moco_v3_ctr(q1, k2, temperature=temperature) + moco_v3_ctr(
            q2, k1, temperature=temperature
        )
        new_state = {**method_state, "batch_stats": stats, "target_batch_stats": target_stats}
        metrics = {
            "pos_cosine": mean_cosine(q1, k2),
            "embedding_std": embedding_std(jnp.concatenate([q1, q2])),
        }
        return value, (new_state, metrics)

    return Method(
        name="mocov3",
        init=init,
        loss=loss,
        update_state=momentum_update(schedule, ENCODER_PARTS),
        export=target_export(network),
        backbone=backbone,
        network=network,
        batch_terms="InfoNCE contrasts each query with the other keys of the batch",
    )
