"""DINO (Caron et al., 2021): self-distillation with no labels, a student and an EMA teacher.

Student: backbone -> :class:`~ssl_jax.models.DINOHead` on every crop. Teacher: the same
structure, an exponential moving average of the student held in ``method_state["target"]``
(params) and ``method_state["target_batch_stats"]`` (its own BatchNorm statistics, as in
BYOL), never trained by gradients; it sees only the two global crops. Crops of one
resolution go through the backbone as one batch (the authors' ``MultiCropWrapper``), the
head runs once on all features. The loss is :func:`~ssl_jax.losses.dino_loss` between the
sharpened, centred teacher outputs and the student outputs of every other crop.

``method_state`` holds, besides the teacher:

- ``center``: ``(K,)`` EMA of the teacher outputs. Its update needs this step's teacher
  outputs, so ``loss`` computes it (:func:`~ssl_jax.losses.dino_center_update` on the
  stop-gradient teacher logits, after they are used with the old center) and returns it in
  the new ``method_state``.
- ``step``: the number of optimizer steps taken, i.e. the index of the step being computed.
  ``loss`` receives a key but no step, so the teacher-temperature warm-up
  (:func:`~ssl_jax.losses.dino_teacher_temperature`) and the frozen last layer read it here;
  ``update_state(params, state, step)`` sets it to ``step + 1``, keeping it equal to the
  train state's step.

Metrics: ``teacher_entropy``, the mean entropy of the centred, sharpened teacher outputs
(``ln K`` when the teacher is uniform for every image, DINO's collapse to uniform, which
``diagnose`` warns about), and ``teacher_batch_entropy``, the entropy of their batch mean
(near 0 for the other collapse, every image on one output); DINO's Fig. 7.

``update_state`` moves the teacher with the cosine momentum schedule of BYOL
(:func:`~ssl_jax.methods.momentum.cosine_momentum`, from ``base_momentum`` to 1).
https://arxiv.org/abs/2104.14294 ; code: https://github.com/facebookresearch/dino
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.augment.multicrop import make_multicrop_fn
from ssl_jax.encoder import make_backbone
from ssl_jax.losses import (
    dino_center_update,
    dino_loss,
    dino_teacher_temperature,
)
from ssl_jax.methods.base import Method
from ssl_jax.methods.collapse import entropy_of_mean, mean_entropy, uniform_collapse_check
from ssl_jax.methods.momentum import (
    cosine_momentum,
    export_network,
    momentum_update,
    target_export,
)
from ssl_jax.methods.networks import dino_head, embed_crops, init_parts
from ssl_jax.methods.views import multicrop_from_config

TARGET_PARTS = ("backbone", "head")

# Method fields beyond proj_hidden_dim (head hidden width) and proj_dim (bottleneck);
# the values of the authors' main_dino.py.
DEFAULTS: dict[str, Any] = dict(
    out_dim=65536,
    head_layers=3,
    head_use_bn=False,
    norm_last_layer=True,
    student_temp=0.1,
    teacher_temp=0.04,
    warmup_teacher_temp=0.04,
    warmup_teacher_temp_steps=0,
    center_momentum=0.9,
    base_momentum=0.996,
    freeze_last_layer_steps=0,
)


def stop_gradient_where(tree, frozen, name: str):
    """Leaves under key ``name`` of ``tree`` get no gradient where ``frozen`` (traced bool)."""

    def select(path, x):
        if any(getattr(k, "key", None) == name for k in path):
            return jnp.where(frozen, jax.lax.stop_gradient(x), x)
        return x

    return jax.tree_util.tree_map_with_path(select, tree)


def make_dino(config: ml_collections.ConfigDict, *, total_steps: int | None = None) -> Method:
    """DINO from the ``model``, ``method``, ``augment`` and ``export`` config sections.

    Head: ``proj_hidden_dim`` hidden, ``proj_dim`` bottleneck, ``out_dim`` outputs; the other
    ``method`` fields and their defaults are in :data:`DEFAULTS`.
    """
    if total_steps is None:
        raise ValueError(
            "DINO needs total_steps for its teacher momentum and temperature schedules."
        )
    hp = {k: config.method.get(k, v) for k, v in DEFAULTS.items()}
    backbone = make_backbone(config.model)
    multicrop = multicrop_from_config(config.augment)
    if len(multicrop.global_specs) != 2:
        raise ValueError(f"DINO needs 2 global crops, got {len(multicrop.global_specs)}.")
    views = make_multicrop_fn(*multicrop)
    num_crops = 2 + multicrop.num_local
    network = export_network(config, "DINO", "EMA teacher")
    parts = {
        "backbone": backbone,
        "head": dino_head(
            backbone.feature_dim,
            int(hp["out_dim"]),
            hidden_features=config.method.proj_hidden_dim,
            bottleneck_features=config.method.proj_dim,
            num_layers=int(hp["head_layers"]),
            use_bn=bool(hp["head_use_bn"]),
            norm_last_layer=bool(hp["norm_last_layer"]),
        ),
    }
    warmup_steps = min(int(hp["warmup_teacher_temp_steps"]), total_steps)
    freeze_steps = int(hp["freeze_last_layer_steps"])

    def init(key, sample_batch=None):
        del sample_batch
        params, stats = init_parts(parts, key)
        state = {
            "batch_stats": stats,
            "target": {name: params[name] for name in TARGET_PARTS},
            "target_batch_stats": {name: stats[name] for name in TARGET_PARTS},
            "center": jnp.zeros((int(hp["out_dim"]),), jnp.float32),
            "step": jnp.zeros((), jnp.int32),
        }
        return params, state

    def loss(params, method_state, batch, key):
        globals_, locals_ = views(batch["images"], key)
        n = globals_[0].shape[0]
        step = method_state["step"]
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
        teacher_temp = dino_teacher_temperature(
            step,
            warmup_teacher_temp=hp["warmup_teacher_temp"],
            teacher_temp=hp["teacher_temp"],
            warmup_steps=warmup_steps,
            total_steps=total_steps,
        )
        value = dino_loss(
            student, teacher, center, student_temp=hp["student_temp"], teacher_temp=teacher_temp
        )
        teacher_logits = (teacher - center) / teacher_temp
        new_state = {
            **method_state,
            "batch_stats": stats,
            "target_batch_stats": target_stats,
            "center": dino_center_update(center, teacher, momentum=hp["center_momentum"]),
        }
        metrics = {
            "teacher_temp": teacher_temp,
            "teacher_entropy": mean_entropy(teacher_logits),
            "teacher_batch_entropy": entropy_of_mean(jax.nn.softmax(teacher_logits, axis=-1)),
        }
        return value, (new_state, metrics)

    ema = momentum_update(
        lambda step: cosine_momentum(
            step, base_momentum=hp["base_momentum"], total_steps=total_steps
        ),
        TARGET_PARTS,
    )

    def update_state(params, method_state, step):
        state = ema(params, method_state, step)
        return {**state, "step": jnp.asarray(step + 1, jnp.int32)}

    diagnose = uniform_collapse_check(
        "teacher_entropy",
        int(hp["out_dim"]),
        "DINO",
        "Remedies: a lower teacher temperature (method.warmup_teacher_temp, "
        "method.teacher_temp), BatchNorm in the head (method.head_use_bn=True), softer views "
        "(augment crop scales, jitter_prob, fewer local crops).",
    )
    return Method(
        name="dino",
        init=init,
        loss=loss,
        update_state=update_state,
        export=target_export(network),
        backbone=backbone,
        diagnose=diagnose,
    )
