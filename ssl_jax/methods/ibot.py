"""iBOT (Zhou et al., 2022): DINO's [CLS] self-distillation plus masked image modelling with
the EMA teacher as online tokenizer.

Student: a ViT built with a mask token (``model.mask_token=True``) and a
:class:`~ssl_jax.models.DINOHead`; teacher: its EMA (``method_state["target"]``), as in DINO.
Each image's two global crops get a blockwise patch mask (:func:`~ssl_jax.pretext.block_masks`,
iBOT's sampler: half the images unmasked, the rest with a ratio in U(0.1, 0.5)); the student
sees them masked (mask token in place of the patch embeddings) and the local crops unmasked,
the teacher sees the global crops unmasked. Two losses (the authors' ``iBOTLoss``):

- [CLS]: :func:`~ssl_jax.losses.dino_loss` between the teacher's centred, sharpened [CLS]
  outputs of the global crops and the student's [CLS] outputs of every other crop;
- patches: :func:`~ssl_jax.losses.ibot_patch_loss` between the student's patch outputs at
  the masked positions of crop ``t`` and the teacher's outputs for the same patches of the
  same crop, with its own center (``method_state["patch_center"]``) and temperatures;

``loss = lambda_cls * L_cls + lambda_patch * L_patch``. Both centers are EMAs of the teacher
outputs (the patch one over every patch), updated inside ``loss`` (the state rule of
:mod:`ssl_jax.method`); ``update_state`` moves the teacher with the cosine momentum.

Heads: ``shared_head=True`` (the released ViT-S/B recipes) runs one head on [CLS] and patch
tokens; ``shared_head=False`` gives the patch tokens a second, separate ``DINOHead``
(``patch_head``, ``patch_out_dim`` outputs), which is DINOv2's ``ibot_separate_head``. The
authors' own ``shared_head=False`` shares the MLP and separates only the last layer, and their
teacher keeps the shared one (``shared_head_teacher=True``): not offered here.

Stochastic depth (``model.drop_path_rate``, 0.1 in the authors' recipe) acts on the student
only: the teacher runs deterministic, as the authors build it with ``drop_path_rate=0``.

https://arxiv.org/abs/2111.07832 ; code: https://github.com/bytedance/ibot
"""

import jax
import jax.numpy as jnp

from ssl_jax.losses import (
    dino_center_update,
    dino_loss,
    dino_teacher_temperature,
    ibot_patch_loss,
)
from ssl_jax.method import MULTICROP, Method, method_factory
from ssl_jax.methods.collapse import entropy_of_mean, mean_entropy, uniform_collapse_check
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


@method_factory("ibot", views=MULTICROP)
def make_ibot(
    backbone,
    views,
    *,
    total_steps: int,
    proj_hidden_dim: int = 2048,
    bottleneck_dim: int = 256,
    out_dim: int = 8192,
    patch_out_dim: int = 8192,
    head_layers: int = 3,
    norm_last_layer: bool = True,
    shared_head: bool = True,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
    warmup_teacher_temp: float = 0.04,
    teacher_patch_temp: float = 0.07,
    warmup_teacher_patch_temp: float = 0.04,
    warmup_teacher_temp_steps: int = 0,
    center_momentum: float = 0.9,
    patch_center_momentum: float = 0.9,
    lambda_cls: float = 1.0,
    lambda_patch: float = 1.0,
    mask_ratios: tuple = (0.0, 0.3),
    mask_ratio_vars: tuple = (0.0, 0.2),
    mask_aspect_ratio: tuple = (0.3, 1 / 0.3),
    base_momentum: float = 0.996,
    freeze_last_layer_steps: int = 0,
    export_network: str = "online",
) -> Method:
    """iBOT on a ViT ``backbone`` with a mask token and the multi-crop ``views(images_uint8,
    key) -> (global_crops, local_crops)`` (two global crops).

    Defaults are the authors' ``main_ibot.py`` values and the README's ViT recipe for the
    masks (``--pred_ratio 0 0.3 --pred_ratio_var 0 0.2``, ``mask_ratios`` /
    ``mask_ratio_vars``; aspect ratios in (0.3, 1/0.3)); ``lambda_cls`` / ``lambda_patch`` are
    their ``lambda1`` / ``lambda2``. With ``shared_head`` the patch outputs are the head's
    ``out_dim`` ones and ``patch_out_dim`` must equal it. ``total_steps``: the run's length,
    for the momentum and temperature schedules. ``export_network``: ``"online"`` (student) or
    ``"target"`` (the EMA teacher, which the authors evaluate).
    """
    if total_steps is None:
        raise ValueError("iBOT needs total_steps for its teacher momentum and temperatures.")
    network = check_export_network(export_network, "iBOT", "EMA teacher")
    module = vit_module(backbone, "iBOT")
    patch_size = module.patch_size
    out_dim, patch_out_dim = int(out_dim), int(patch_out_dim)
    if shared_head and patch_out_dim != out_dim:
        raise ValueError(
            f"iBOT with shared_head=True gives patch outputs of the head's out_dim={out_dim}; "
            f"set method.patch_out_dim={out_dim} or method.shared_head=False."
        )
    mask_ratios, mask_ratio_vars = tuple(mask_ratios), tuple(mask_ratio_vars)
    draw_mask_ratios(jax.random.key(0), 1, ratios=mask_ratios, ratio_vars=mask_ratio_vars)
    head_kwargs = {
        "hidden_features": proj_hidden_dim,
        "bottleneck_features": bottleneck_dim,
        "num_layers": int(head_layers),
        "norm_last_layer": bool(norm_last_layer),
    }
    parts = {"backbone": backbone, "head": dino_head(backbone.feature_dim, out_dim, **head_kwargs)}
    if not shared_head:
        parts["patch_head"] = dino_head(backbone.feature_dim, patch_out_dim, **head_kwargs)
    heads = ("head", "head" if shared_head else "patch_head")
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

    def temperature(step, warmup, final):
        return dino_teacher_temperature(
            step,
            warmup_teacher_temp=warmup,
            teacher_temp=final,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
        )

    def loss(params, method_state, batch, key, step, frozen):
        del frozen
        view_key, mask_key, drop_key = jax.random.split(key, 3)
        globals_, locals_ = (tuple(crops) for crops in views(batch["images"], view_key))
        if len(globals_) != NUM_GLOBAL:
            raise ValueError(f"iBOT needs {NUM_GLOBAL} global crops, got {len(globals_)}.")
        num_crops = NUM_GLOBAL + len(locals_)
        n, height, width, _ = globals_[0].shape
        grid = (height // patch_size, width // patch_size)
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
        length = grid[0] * grid[1]
        student_cls = student["cls"].reshape(num_crops, n, -1)
        teacher_cls = teacher["cls"].reshape(NUM_GLOBAL, n, -1)
        student_patch = student["patch"].reshape(NUM_GLOBAL, n, length, -1)
        teacher_patch = teacher["patch"].reshape(NUM_GLOBAL, n, length, -1)
        masks = masks.reshape(NUM_GLOBAL, n, length)
        center = jax.lax.stop_gradient(method_state["center"])
        patch_center = jax.lax.stop_gradient(method_state["patch_center"])
        temp = temperature(step, warmup_teacher_temp, teacher_temp)
        patch_temp = temperature(step, warmup_teacher_patch_temp, teacher_patch_temp)
        cls_loss = dino_loss(
            student_cls, teacher_cls, center, student_temp=student_temp, teacher_temp=temp
        )
        patch_loss = ibot_patch_loss(
            student_patch,
            teacher_patch,
            patch_center,
            masks,
            student_temp=student_temp,
            teacher_temp=patch_temp,
        )
        value = lambda_cls * cls_loss + lambda_patch * patch_loss
        new_state = {
            **method_state,
            "batch_stats": stats,
            "target_batch_stats": target_stats,
            "center": dino_center_update(center, teacher_cls, momentum=center_momentum),
            "patch_center": dino_center_update(
                patch_center, teacher_patch, momentum=patch_center_momentum
            ),
        }
        teacher_logits = (teacher_cls - center) / temp
        metrics = {
            "cls_loss": cls_loss,
            "patch_loss": patch_loss,
            "teacher_temp": temp,
            "teacher_patch_temp": patch_temp,
            "mask_ratio": jnp.mean(masks),
            "teacher_entropy": mean_entropy(teacher_logits),
            "teacher_batch_entropy": entropy_of_mean(jax.nn.softmax(teacher_logits, axis=-1)),
        }
        return value, (new_state, metrics)

    update_state = momentum_update(
        lambda step: cosine_momentum(step, base_momentum=base_momentum, total_steps=total_steps),
        target_parts,
    )
    diagnose = uniform_collapse_check(
        "teacher_entropy",
        out_dim,
        "iBOT",
        "Remedies: a lower teacher temperature (method.warmup_teacher_temp, "
        "method.teacher_temp), softer views (augment crop scales, fewer local crops).",
    )
    export, head_spec = prototype_export(
        network,
        out_dim,
        head_kwargs,
        lambda step: temperature(step, warmup_teacher_temp, teacher_temp),
    )
    return Method(
        name="ibot",
        init=init,
        loss=loss,
        update_state=update_state,
        export=export,
        head_spec=head_spec,
        backbone=backbone,
        network=network,
        diagnose=diagnose,
        batch_terms="",  # per-image cross-entropies; the centers are EMAs of batch means
    )
