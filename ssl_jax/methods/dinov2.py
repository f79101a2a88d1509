"""DINOv2 (Oquab et al., 2023/2024): DINO's [CLS] loss, iBOT's masked patch loss with a
separate head, the KoLeo regulariser and Sinkhorn-Knopp centering of the teacher.

Student: a ViT built with a mask token (``model.mask_token=True``; DINOv2 trains with
LayerScale 1e-5, ``model.layer_scale``, stochastic depth, ``model.drop_path_rate``, and
optionally registers, ``model.num_registers``), a DINO head (``head``) on [CLS] and, with
``separate_head`` (the paper's choice), an iBOT head (``ibot_head``) on the patch tokens;
teacher: their EMA, deterministic. The global crops get iBOT's blockwise masks
(:func:`~ssl_jax.pretext.block_masks`) for the student; the teacher sees them unmasked. With
``q`` the teacher's targets (the loss of the authors' ``SSLMetaArch.forward_backward``):

    L = dino_weight * H(q_cls, student [CLS] of the other crops)
        + koleo_weight * sum over the 2 global crops of KoLeo(student backbone [CLS])
        + ibot_weight * masked patch cross-entropy(q_patch, student patches)

(:func:`~ssl_jax.losses.dino_cross_entropy`, :func:`~ssl_jax.losses.koleo_loss`,
:func:`~ssl_jax.losses.masked_patch_cross_entropy`). ``centering="sinkhorn_knopp"`` (the
paper): ``q`` is :func:`~ssl_jax.losses.sinkhorn_knopp` of the teacher's logits at the
teacher temperature, 3 iterations, over the ``2N`` [CLS] outputs and over the masked patches
only (``where=``); ``centering="centering"`` (the code's default config): DINO's softmax of
centred logits, the [CLS] center over all global crops, the patch center over the masked
patches (the authors' ``iBOTPatchLoss.update_center``), both updated inside ``loss``. One
teacher temperature schedule serves both.

Differences from the authors: masks follow iBOT's sampler (half the images unmasked, the
others a ratio from U(0.1, 0.5)); DINOv2's collate masks exactly half the batch with ratios
stratified over [0.1, 0.5]. KoLeo's nearest neighbours are searched in the global batch (the
authors: each GPU's). Stochastic depth follows timm's linear rule (DINOv2:
``drop_path_uniform``, the same rate in every block).

https://arxiv.org/abs/2304.07193 ; code: https://github.com/facebookresearch/dinov2
"""

import jax
import jax.numpy as jnp

from ssl_jax.losses import (
    dino_center_update,
    dino_cross_entropy,
    dino_teacher_temperature,
    koleo_loss,
    masked_patch_cross_entropy,
    sinkhorn_knopp,
)
from ssl_jax.method import MULTICROP, Method, method_factory
from ssl_jax.methods.collapse import mean_entropy, uniform_collapse_check
from ssl_jax.methods.common import masked_student_and_teacher
from ssl_jax.methods.momentum import (
    check_export_network,
    cosine_momentum,
    init_target,
    momentum_update,
    prototype_export,
)
from ssl_jax.methods.networks import dino_head, init_parts, vit_module
from ssl_jax.pretext import block_masks, draw_mask_ratios

NUM_GLOBAL = 2
CENTERINGS = ("sinkhorn_knopp", "centering")
SINKHORN_ITERS = 3


def centered_softmax(logits, center, temp):
    return jax.nn.softmax((logits - center) / temp, axis=-1)


def masked_mean(x, mask):
    """Mean of the rows of ``x`` ``(..., K)`` where ``mask`` ``(...)``; 0 without any."""
    weights = mask.astype(x.dtype)[..., None]
    return jnp.sum(x * weights, axis=tuple(range(mask.ndim))) / jnp.maximum(jnp.sum(weights), 1)


@method_factory("dinov2", views=MULTICROP)
def make_dinov2(
    backbone,
    views,
    *,
    total_steps: int,
    proj_hidden_dim: int = 2048,
    bottleneck_dim: int = 256,
    out_dim: int = 65536,
    patch_out_dim: int = 65536,
    head_layers: int = 3,
    separate_head: bool = True,
    centering: str = "sinkhorn_knopp",
    student_temp: float = 0.1,
    teacher_temp: float = 0.07,
    warmup_teacher_temp: float = 0.04,
    warmup_teacher_temp_steps: int = 0,
    center_momentum: float = 0.9,
    dino_weight: float = 1.0,
    ibot_weight: float = 1.0,
    koleo_weight: float = 0.1,
    mask_ratios: tuple = (0.0, 0.3),
    mask_ratio_vars: tuple = (0.0, 0.2),
    mask_aspect_ratio: tuple = (0.3, 1 / 0.3),
    base_momentum: float = 0.992,
    freeze_last_layer_steps: int = 0,
    export_network: str = "online",
) -> Method:
    """DINOv2 on a ViT ``backbone`` with a mask token and the multi-crop ``views(images_uint8,
    key) -> (global_crops, local_crops)`` (two global crops).

    Defaults: the authors' ``ssl_default_config.yaml`` (heads 2048-2048-256 -> 65536, KoLeo
    weight 0.1, teacher temperature 0.04 -> 0.07, teacher momentum 0.992 -> 1, center momentum
    0.9) with the paper's separate heads and Sinkhorn-Knopp centering. The heads' last layers
    learn their norm (DINOv2's ``DINOHead`` default). ``separate_head=False``: the patch tokens
    go through the DINO head (``patch_out_dim`` must equal ``out_dim``).
    """
    if total_steps is None:
        raise ValueError("DINOv2 needs total_steps for its teacher momentum and temperature.")
    network = check_export_network(export_network, "DINOv2", "EMA teacher")
    if centering not in CENTERINGS:
        raise ValueError(f"method.centering={centering!r} is unknown; valid: {list(CENTERINGS)}.")
    module = vit_module(backbone, "DINOv2")
    patch_size = module.patch_size
    out_dim, patch_out_dim = int(out_dim), int(patch_out_dim)
    if not separate_head and patch_out_dim != out_dim:
        raise ValueError(
            f"DINOv2 with separate_head=False gives patch outputs of the DINO head's "
            f"out_dim={out_dim}; set method.patch_out_dim={out_dim} or method.separate_head=True."
        )
    mask_ratios, mask_ratio_vars = tuple(mask_ratios), tuple(mask_ratio_vars)
    draw_mask_ratios(jax.random.key(0), 1, ratios=mask_ratios, ratio_vars=mask_ratio_vars)
    head_kwargs = {
        "hidden_features": proj_hidden_dim,
        "bottleneck_features": bottleneck_dim,
        "num_layers": int(head_layers),
        "norm_last_layer": False,
    }
    parts = {"backbone": backbone, "head": dino_head(backbone.feature_dim, out_dim, **head_kwargs)}
    if separate_head:
        parts["ibot_head"] = dino_head(backbone.feature_dim, patch_out_dim, **head_kwargs)
    heads = ("head", "ibot_head" if separate_head else "head")
    target_parts = tuple(parts)
    stochastic = module.drop_rate > 0 or module.drop_path_rate > 0
    warmup_steps = min(int(warmup_teacher_temp_steps), total_steps)
    freeze_steps = int(freeze_last_layer_steps)

    def init(key):
        params, stats = init_parts(parts, key)
        state = {
            "batch_stats": stats,
            **init_target(params, stats, target_parts),
            "center": jnp.zeros((out_dim,), jnp.float32),
            "patch_center": jnp.zeros((patch_out_dim,), jnp.float32),
        }
        return params, state

    def temperature(step):
        return dino_teacher_temperature(
            step,
            warmup_teacher_temp=warmup_teacher_temp,
            teacher_temp=teacher_temp,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
        )

    def loss(params, method_state, batch, key, step, frozen):
        del frozen
        view_key, mask_key, drop_key = jax.random.split(key, 3)
        globals_, locals_ = (tuple(crops) for crops in views(batch["images"], view_key))
        if len(globals_) != NUM_GLOBAL:
            raise ValueError(f"DINOv2 needs {NUM_GLOBAL} global crops, got {len(globals_)}.")
        num_crops = NUM_GLOBAL + len(locals_)
        n, height, width, _ = globals_[0].shape
        grid = (height // patch_size, width // patch_size)
        length = grid[0] * grid[1]
        masks = block_masks(
            mask_key,
            NUM_GLOBAL * n,
            grid,
            ratios=mask_ratios,
            ratio_vars=mask_ratio_vars,
            aspect_ratio=tuple(mask_aspect_ratio),
        )
        student, stats, teacher, target_stats = masked_student_and_teacher(
            parts,
            heads,
            params,
            method_state,
            globals_,
            locals_,
            masks,
            frozen_last=step < freeze_steps if freeze_steps else None,
            rngs=drop_key if stochastic else None,
        )
        masks = masks.reshape(NUM_GLOBAL, n, length)
        teacher_cls = teacher["cls"].reshape(NUM_GLOBAL, n, -1)
        teacher_patch = teacher["patch"].reshape(NUM_GLOBAL, n, length, -1)
        temp = temperature(step)
        center = jax.lax.stop_gradient(method_state["center"])
        patch_center = jax.lax.stop_gradient(method_state["patch_center"])
        new_state = {
            **method_state,
            "batch_stats": stats,
            "target_batch_stats": target_stats,
        }
        if centering == "sinkhorn_knopp":
            flat = teacher_cls.reshape(NUM_GLOBAL * n, -1)
            q_cls = sinkhorn_knopp(flat, epsilon=temp, num_iters=SINKHORN_ITERS)
            q_cls = q_cls.reshape(teacher_cls.shape)
            flat = teacher_patch.reshape(NUM_GLOBAL * n * length, -1)
            q_patch = sinkhorn_knopp(
                flat, epsilon=temp, num_iters=SINKHORN_ITERS, where=masks.reshape(-1)
            ).reshape(teacher_patch.shape)
        else:
            q_cls = centered_softmax(teacher_cls, center, temp)
            q_patch = centered_softmax(teacher_patch, patch_center, temp)
            new_state["center"] = dino_center_update(center, teacher_cls, momentum=center_momentum)
            new_state["patch_center"] = center_momentum * patch_center + (
                1 - center_momentum
            ) * masked_mean(teacher_patch, masks)
        student_cls = student["cls"].reshape(num_crops, n, -1)
        student_patch = student["patch"].reshape(NUM_GLOBAL, n, length, -1)
        dino = dino_cross_entropy(student_cls, q_cls, student_temp=student_temp)
        ibot = masked_patch_cross_entropy(student_patch, q_patch, masks, student_temp=student_temp)
        features = student["cls_features"][: NUM_GLOBAL * n].reshape(NUM_GLOBAL, n, -1)
        koleo = sum(koleo_loss(features[i]) for i in range(NUM_GLOBAL))
        value = dino_weight * dino + ibot_weight * ibot + koleo_weight * koleo
        metrics = {
            "dino_loss": dino,
            "ibot_loss": ibot,
            "koleo_loss": koleo,
            "teacher_temp": temp,
            "mask_ratio": jnp.mean(masks),
            "teacher_entropy": mean_entropy(jnp.log(jnp.maximum(q_cls, 1e-30))),
        }
        return value, (new_state, metrics)

    update_state = momentum_update(
        lambda step: cosine_momentum(step, base_momentum=base_momentum, total_steps=total_steps),
        target_parts,
    )
    diagnose = uniform_collapse_check(
        "teacher_entropy",
        out_dim,
        "DINOv2",
        "Remedies: a lower teacher temperature (method.warmup_teacher_temp, "
        "method.teacher_temp), softer views (augment crop scales, fewer local crops).",
    )
    export, head_spec = prototype_export(
        network,
        out_dim,
        head_kwargs,
        temperature,
        centering=centering,
        sinkhorn_iters=SINKHORN_ITERS,
    )
    return Method(
        name="dinov2",
        init=init,
        loss=loss,
        update_state=update_state,
        export=export,
        head_spec=head_spec,
        backbone=backbone,
        network=network,
        diagnose=diagnose,
        batch_terms=(
            "KoLeo's nearest neighbours within each global crop's batch; with "
            "centering='sinkhorn_knopp' the teacher targets are normalised over the batch"
        ),
    )
