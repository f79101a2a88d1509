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
import ml_collections
import optax
from jax.typing import ArrayLike

from ssl_jax.encoder import make_backbone
from ssl_jax.losses import l2_normalize
from ssl_jax.methods.base import Method
from ssl_jax.methods.common import (
    embedding_std,
    export_network,
    mean_cosine,
    momentum_update,
    target_export,
    two_view_fn,
)
from ssl_jax.methods.moco import ENCODER_PARTS, make_momentum_schedule
from ssl_jax.methods.networks import apply_chain, init_parts, mlp_head

ONLINE_PARTS = ("backbone", "projector", "predictor")


def moco_v3_ctr(query: ArrayLike, key: ArrayLike, *, temperature: float) -> jax.Array:
    r"""MoCo v3's contrastive loss: cross-entropy over in-batch keys, scaled by ``2 T``.

    With ``q`` and ``k`` L2-normalised,

    .. math::
        \mathrm{ctr}(q, k) = \frac{2\tau}{N} \sum_{i=1}^{N}
            -\log \frac{\exp(q_i^\top k_i/\tau)}{\sum_{j=1}^{N} \exp(q_i^\top k_j/\tau)}

    (the authors' ``CrossEntropyLoss()(q @ k.T / T, arange(N)) * (2 * T)``; the ``2 T`` factor
    makes the gradient's scale independent of ``T``). Unlike :func:`~ssl_jax.losses.info_nce`
    with a queue, the negatives are the other ``N - 1`` keys of the same batch and the positive
    is on the diagonal. ``key`` should be wrapped in ``jax.lax.stop_gradient`` by the caller.

    Args:
      query: ``(N, D)`` base-encoder predictions.
      key: ``(N, D)`` momentum-encoder projections, ``key[i]`` the positive of ``query[i]``.
      temperature: :math:`\tau > 0` (1.0 for the authors' ResNet-50, 0.2 for ViT).

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> e = jnp.eye(2)
      >>> round(float(moco_v3_ctr(e, e, temperature=1.0)), 4)
      0.6265
    """
    query = jnp.asarray(query)
    key = jnp.asarray(key)
    if query.ndim != 2 or query.shape != key.shape:
        raise ValueError(
            f"moco_v3_ctr expects query and key of the same (N, D) shape, got {query.shape} "
            f"and {key.shape}."
        )
    if temperature <= 0:
        raise ValueError(f"moco_v3_ctr needs temperature > 0, got {temperature}.")
    dtype = jnp.promote_types(jnp.result_type(query, key), jnp.float32)
    q = l2_normalize(query.astype(dtype))
    k = l2_normalize(key.astype(dtype))
    logits = q @ k.T / temperature
    labels = jnp.arange(q.shape[0])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return 2.0 * temperature * jnp.mean(ce)


def make_mocov3(config: ml_collections.ConfigDict, *, total_steps: int | None = None) -> Method:
    """MoCo v3 from the ``model``, ``method``, ``augment`` and ``export`` config sections."""
    hp = config.method
    backbone = make_backbone(config.model)
    views = two_view_fn(config, "MoCo v3")
    network = export_network(config, "MoCo v3", "momentum encoder")
    schedule = make_momentum_schedule(hp, total_steps=total_steps, method="MoCo v3")
    temperature = float(hp.temperature)
    if temperature <= 0:
        raise ValueError(f"method.temperature must be > 0, got {temperature}.")
    head = dict(last_bn=True, last_bn_affine=False)
    parts = {
        "backbone": backbone,
        "projector": mlp_head(
            backbone.feature_dim,
            hp.proj_hidden_dim,
            hp.proj_dim,
            num_layers=int(hp.get("proj_num_layers", 3)),
            **head,
        ),
        "predictor": mlp_head(hp.proj_dim, hp.pred_hidden_dim, hp.proj_dim, num_layers=2, **head),
    }

    def init(key, sample_batch=None):
        del sample_batch
        params, stats = init_parts(parts, key)
        state = {
            "batch_stats": stats,
            "target": {name: params[name] for name in ENCODER_PARTS},
            "target_batch_stats": {name: stats[name] for name in ENCODER_PARTS},
        }
        return params, state

    def loss(params, method_state, batch, key):
        v1, v2 = views(batch["images"], key)
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
    )
