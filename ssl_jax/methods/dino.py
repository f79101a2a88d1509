"""DINO (Caron et al., 2021): self-distillation with no labels, a student and an EMA teacher.

Student: backbone -> :class:`~ssl_jax.models.DINOHead` on every crop (the ``online``
network). Teacher: the same structure, an exponential moving average of the student: the
``target`` network, like every EMA network here (``method_state["target"]``, its own BatchNorm
statistics in ``method_state["target_batch_stats"]``, ``export.network="target"``), never
trained by gradients; it sees only the two global crops. Crops of one resolution go through
the backbone as one batch (the authors' ``MultiCropWrapper``), the head runs once on all
features. The loss is :func:`~ssl_jax.losses.dino_loss` between the sharpened, centred
teacher outputs and the student outputs of every other crop.

``method_state["center"]`` ``(K,)`` is an EMA of the teacher outputs; it depends on this
step's activations, so ``loss`` updates it (:func:`~ssl_jax.losses.dino_center_update` on
the stop-gradient teacher outputs, after they are used with the old center) and returns it.
``update_state`` moves the teacher with BYOL's cosine momentum from ``base_momentum`` to 1
(:func:`~ssl_jax.methods.momentum.cosine_momentum`).

Metrics: ``teacher_entropy``, the mean entropy of the centred, sharpened teacher outputs
(``ln K`` when the teacher is uniform for every image, DINO's collapse to uniform, which
``diagnose`` warns about), and ``teacher_batch_entropy``, the entropy of their batch mean
(near 0 for the other collapse, every image on one output); DINO's Fig. 7.

The export carries the exported network's head, center and teacher temperature (spec head
``kind: "prototypes"``, :func:`~ssl_jax.methods.momentum.prototype_export`): with
``export_network="target"`` the teacher's prototype distribution, which ``dino_kd`` distils.

https://arxiv.org/abs/2104.14294 ; code: https://github.com/facebookresearch/dino
"""

import jax
import jax.numpy as jnp

from ssl_jax.losses import (
    dino_center_update,
    dino_loss,
    dino_teacher_temperature,
)
from ssl_jax.method import MULTICROP, Method, method_factory
from ssl_jax.methods.collapse import entropy_of_mean, mean_entropy, uniform_collapse_check
from ssl_jax.methods.common import stop_gradient_where
from ssl_jax.methods.momentum import (
    check_export_network,
    cosine_momentum,
    init_target,
    momentum_update,
    prototype_export,
)
from ssl_jax.methods.networks import dino_head, embed_crops, init_parts

TARGET_PARTS = ("backbone", "head")
NUM_GLOBAL = 2


@method_factory("dino", views=MULTICROP)
def make_dino(
    backbone,
    views,
    *,
    total_steps: int,
    proj_hidden_dim: int = 2048,
    bottleneck_dim: int = 256,
    out_dim: int = 65536,
    head_layers: int = 3,
    head_use_bn: bool = False,
    norm_last_layer: bool = True,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
    warmup_teacher_temp: float = 0.04,
    warmup_teacher_temp_steps: int = 0,
    center_momentum: float = 0.9,
    base_momentum: float = 0.996,
    freeze_last_layer_steps: int = 0,
    export_network: str = "online",
) -> Method:
    """DINO on ``backbone`` and the multi-crop function ``views(images_uint8, key) ->
    (global_crops, local_crops)`` (two global crops).

    Head (:class:`~ssl_jax.models.DINOHead`): an MLP of ``head_layers`` Linear layers
    (hidden width ``proj_hidden_dim``) ending at the ``bottleneck_dim`` bottleneck, which is
    L2-normalised, then a weight-normalised linear layer to ``out_dim`` outputs; the defaults
    are the authors' ``main_dino.py`` values. ``total_steps`` is the run's length, for the
    teacher momentum and temperature schedules. ``export_network``: ``"online"`` (the
    student) or ``"target"`` (the EMA teacher).
    """
    if total_steps is None:
        raise ValueError(
            "DINO needs total_steps for its teacher momentum and temperature schedules."
        )
    network = check_export_network(export_network, "DINO", "EMA teacher")
    out_dim = int(out_dim)
    head_kwargs = {
        "hidden_features": proj_hidden_dim,
        "bottleneck_features": bottleneck_dim,
        "num_layers": int(head_layers),
        "use_bn": bool(head_use_bn),
        "norm_last_layer": bool(norm_last_layer),
    }
    parts = {"backbone": backbone, "head": dino_head(backbone.feature_dim, out_dim, **head_kwargs)}
    warmup_steps = min(int(warmup_teacher_temp_steps), total_steps)
    freeze_steps = int(freeze_last_layer_steps)

    def temperature(step):
        return dino_teacher_temperature(
            step,
            warmup_teacher_temp=warmup_teacher_temp,
            teacher_temp=teacher_temp,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
        )

    def init(key):
        params, stats = init_parts(parts, key)
        state = {
            "batch_stats": stats,
            **init_target(params, stats, TARGET_PARTS),
            "center": jnp.zeros((out_dim,), jnp.float32),
        }
        return params, state

    def loss(params, method_state, batch, key, step, frozen):
        del frozen
        globals_, locals_ = (tuple(crops) for crops in views(batch["images"], key))
        if len(globals_) != NUM_GLOBAL:
            raise ValueError(f"DINO needs {NUM_GLOBAL} global crops, got {len(globals_)}.")
        num_crops = NUM_GLOBAL + len(locals_)
        n = globals_[0].shape[0]
        if freeze_steps:
            head = stop_gradient_where(params["head"], step < freeze_steps, "last_layer")
            params = {**params, "head": head}
        student, stats = embed_crops(
            parts, "head", params, method_state["batch_stats"], globals_ + locals_
        )
        teacher, target_stats = embed_crops(
            parts,
            "head",
            jax.lax.stop_gradient(method_state["target"]),
            method_state["target_batch_stats"],
            globals_,
        )
        student = student.reshape(num_crops, n, -1)
        teacher = jax.lax.stop_gradient(teacher).reshape(2, n, -1)
        center = jax.lax.stop_gradient(method_state["center"])
        temp = temperature(step)
        value = dino_loss(student, teacher, center, student_temp=student_temp, teacher_temp=temp)
        teacher_logits = (teacher - center) / temp
        new_state = {
            **method_state,
            "batch_stats": stats,
            "target_batch_stats": target_stats,
            "center": dino_center_update(center, teacher, momentum=center_momentum),
        }
        metrics = {
            "teacher_temp": temp,
            "teacher_entropy": mean_entropy(teacher_logits),
            "teacher_batch_entropy": entropy_of_mean(jax.nn.softmax(teacher_logits, axis=-1)),
        }
        return value, (new_state, metrics)

    update_state = momentum_update(
        lambda step: cosine_momentum(step, base_momentum=base_momentum, total_steps=total_steps),
        TARGET_PARTS,
    )

    diagnose = uniform_collapse_check(
        "teacher_entropy",
        out_dim,
        "DINO",
        "Remedies: a lower teacher temperature (method.warmup_teacher_temp, "
        "method.teacher_temp), BatchNorm in the head (method.head_use_bn=True), softer views "
        "(augment crop scales, jitter_prob, fewer local crops).",
    )
    export, head_spec = prototype_export(network, out_dim, head_kwargs, temperature)
    return Method(
        name="dino",
        init=init,
        loss=loss,
        update_state=update_state,
        export=export,
        head_spec=head_spec,
        backbone=backbone,
        network=network,
        diagnose=diagnose,
        batch_terms="",  # per-example cross-entropies; the center is an EMA of a batch mean
    )
