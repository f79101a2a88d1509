"""MSN (Assran et al., 2022, "Masked Siamese Networks for Label-Efficient Learning") and PMSN
(its power-law prior, ``prior_exponent > 0``). https://arxiv.org/abs/2204.07141 ; code:
https://github.com/facebookresearch/msn

Multi-crop views: the first global crop is the **target view**, seen whole by the target
network (an EMA of backbone + projector, ``method_state["target"]``, no gradient); the other
global crop, with ``patch_drop`` of its patches dropped at random (one draw per batch, as the
authors' ``torch.randperm``; through the ViT's ``keep_indices``), and every local crop
(unmasked, as the authors' focal views) are the **anchor views**, seen by the online network.
The loss is :func:`~ssl_jax.losses.msn_loss`: soft assignments to ``num_prototypes``
learnable prototypes (``params["prototypes"]``, trained), the target view's sharpened and
Sinkhorn-balanced assignment as every anchor's target, plus ``regularization_weight`` times
the KL divergence of the anchors' mean assignment from the prior (uniform: MSN's
mean-entropy maximisation; a power law of exponent ``prior_exponent``: PMSN).

Differences from the authors: the projector's activations are ReLU (theirs GELU); the
momentum rises linearly to ``final_momentum`` over the run (theirs over 1.25 runs); the
sharpening temperature is constant (their config's schedule is constant, 0.25 -> 0.25).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.losses import msn_loss, power_law_prior
from ssl_jax.method import MULTICROP, Method, method_factory
from ssl_jax.methods.momentum import (
    check_export_network,
    init_target,
    make_momentum_schedule,
    momentum_update,
    target_export,
)
from ssl_jax.methods.networks import apply_chain, init_parts, mlp_head

TARGET_PARTS = ("backbone", "projector")


def random_patch_drop(key: jax.Array, n: int, num_patches: int, drop: float) -> jax.Array:
    """``(N, K)`` patch indices each image keeps, ``K = floor(L (1 - drop))``: one random
    subset for the whole batch, as the authors' ``randperm`` (their [CLS] token is kept, as the
    ViT here always keeps it)."""
    keep = int(num_patches * (1.0 - drop))
    perm = jax.random.permutation(key, num_patches)[:keep]
    return jnp.broadcast_to(perm, (n, keep))


@method_factory("msn", views=MULTICROP)
def make_msn(
    backbone,
    views,
    *,
    total_steps: int | None = None,
    export_network: str = "online",
    proj_hidden_dim: int = 2048,
    proj_dim: int = 256,
    proj_use_bn: bool = True,
    num_prototypes: int = 1024,
    temperature: float = 0.1,
    sharpen_temperature: float = 0.25,
    use_sinkhorn: bool = True,
    regularization_weight: float = 1.0,
    prior_exponent: float = 0.0,
    patch_drop: float = 0.15,
    momentum: float = 0.996,
    final_momentum: float = 1.0,
    momentum_schedule: str = "linear",
) -> Method:
    """MSN on a ViT ``backbone`` and the multi-crop function ``views(images_uint8, key) ->
    (global_crops, local_crops)`` (two global crops: target and masked anchor). The defaults
    are the authors' ViT-S/16 config; ``prior_exponent=0.25`` gives PMSN's power-law prior;
    ``proj_use_bn``: BatchNorm in the projector's hidden layers (the authors' ``use_bn``)."""
    network = check_export_network(export_network, "MSN", "EMA target network")
    if not 0.0 <= patch_drop < 1.0:
        raise ValueError(f"method.patch_drop={patch_drop} must lie in [0, 1) (MSN: 0.15).")
    if sharpen_temperature <= 0 or temperature <= 0:
        raise ValueError("MSN's method.temperature and method.sharpen_temperature must be > 0.")
    patch = _patch_size(backbone)
    num_prototypes = int(num_prototypes)
    prior = power_law_prior(num_prototypes, prior_exponent)
    schedule = make_momentum_schedule(
        momentum_schedule,
        momentum=momentum,
        final_momentum=final_momentum,
        total_steps=total_steps,
        method="MSN",
    )
    parts = {
        "backbone": backbone,
        "projector": mlp_head(
            backbone.feature_dim, proj_hidden_dim, proj_dim, num_layers=3, use_bn=bool(proj_use_bn)
        ),
    }
    options = dict(
        temperature=temperature,
        sharpen_temperature=sharpen_temperature,
        use_sinkhorn=bool(use_sinkhorn),
        regularization_weight=regularization_weight,
        prior=prior,
    )

    def init(key):
        net_key, proto_key = jax.random.split(key)
        params, stats = init_parts(parts, net_key)
        bound = proj_dim**-0.5  # the authors' uniform_(-1/sqrt(D), 1/sqrt(D))
        params["prototypes"] = jax.random.uniform(
            proto_key, (num_prototypes, proj_dim), minval=-bound, maxval=bound
        )
        return params, {"batch_stats": stats, **init_target(params, stats, TARGET_PARTS)}

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        view_key, drop_key = jax.random.split(key)
        globals_, locals_ = (tuple(crops) for crops in views(batch["images"], view_key))
        if len(globals_) != 2:
            raise ValueError(f"MSN needs 2 global crops (target, anchor), got {len(globals_)}.")
        target_view, anchor_view = globals_
        n = target_view.shape[0]
        h, target_stats = apply_chain(
            parts,
            TARGET_PARTS,
            jax.lax.stop_gradient(method_state["target"]),
            method_state["target_batch_stats"],
            target_view,
        )
        stats = method_state["batch_stats"]
        num_patches = (anchor_view.shape[1] // patch) * (anchor_view.shape[2] // patch)
        keep = random_patch_drop(drop_key, n, num_patches, patch_drop)
        f_masked, backbone_stats = backbone.apply(
            params["backbone"], stats["backbone"], anchor_view, train=True, keep_indices=keep
        )
        features = [f_masked]
        if locals_:  # the focal views, one batch (the authors' crops of one size)
            f, backbone_stats = backbone.apply(
                params["backbone"], backbone_stats, jnp.concatenate(locals_), train=True
            )
            features.append(f)
        z, projector_stats = parts["projector"].apply(
            params["projector"], stats["projector"], jnp.concatenate(features), train=True
        )
        value, terms = msn_loss(z, jax.lax.stop_gradient(h), params["prototypes"], **options)
        new_state = {
            **method_state,
            "batch_stats": {"backbone": backbone_stats, "projector": projector_stats},
            "target_batch_stats": target_stats,
        }
        return value, (new_state, terms)

    return Method(
        name="msn",
        init=init,
        loss=loss,
        update_state=momentum_update(schedule, TARGET_PARTS),
        export=target_export(network),
        backbone=backbone,
        network=network,
        batch_terms="Sinkhorn balances the batch's targets, the regulariser takes the batch's "
        "mean prediction, and the projector's BatchNorm",
    )


def _patch_size(backbone) -> int:
    module = nnx.eval_shape(lambda: backbone.build(rngs=nnx.Rngs(0)))
    if not hasattr(module, "patch_size"):
        raise ValueError(
            f"MSN masks patches, so it needs a ViT backbone (model.backbone=vit_*), got "
            f"{type(module).__name__}."
        )
    return int(module.patch_size)
