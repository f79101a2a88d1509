"""DINO (Caron et al., 2021): self-distillation with no labels, a student and an EMA teacher.

Student: backbone -> :class:`DINOHead` on every crop. Teacher: the same structure, an
exponential moving average of the student held in ``method_state["target"]`` (params) and
``method_state["target_batch_stats"]`` (its own BatchNorm statistics, as in BYOL), never
trained by gradients; it sees only the two global crops. Crops of one resolution go through
the backbone as one batch (the authors' ``MultiCropWrapper``), the head runs once on all
features. The loss is :func:`~ssl_jax.losses.dino_loss` between the sharpened, centred
teacher outputs and the student outputs of every other crop.

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
(:func:`~ssl_jax.methods.byol.cosine_momentum`, from ``base_momentum`` to 1).
https://arxiv.org/abs/2104.14294 ; code: https://github.com/facebookresearch/dino
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ssl_jax.augment.multicrop import make_multicrop_fn
from ssl_jax.encoder import make_backbone
from ssl_jax.losses import (
    dino_center_update,
    dino_loss,
    dino_teacher_temperature,
    l2_normalize,
)
from ssl_jax.methods.base import Method
from ssl_jax.methods.byol import cosine_momentum
from ssl_jax.methods.collapse import entropy_of_mean, mean_entropy, uniform_collapse_check
from ssl_jax.methods.common import export_network, momentum_update, target_export
from ssl_jax.methods.networks import HeadDef, init_parts
from ssl_jax.methods.views import multicrop_from_config
from ssl_jax.models import split_module
from ssl_jax.models.resnet import BN_EPSILON, BN_MOMENTUM

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

_TRUNC_NORMAL = nnx.initializers.truncated_normal(stddev=0.02)


class WeightNormLinear(nnx.Module):
    """``x @ (g * v / ||v||)``, no bias: ``torch.nn.utils.weight_norm(Linear(bias=False))``.

    Each output's weight column ``v[:, k]`` is divided by its norm in the forward pass, so
    only its direction is learnt; with ``learn_norm=False`` the norm ``g`` is fixed to 1
    (DINO's ``norm_last_layer=True``), otherwise ``g`` is a parameter starting at 1.
    """

    def __init__(self, in_features: int, out_features: int, *, learn_norm: bool, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_TRUNC_NORMAL(rngs.params(), (in_features, out_features)))
        self.scale = nnx.Param(jnp.ones((out_features,))) if learn_norm else None

    def __call__(self, x: jax.Array) -> jax.Array:
        v = self.kernel[...]
        w = l2_normalize(v, axis=0)
        if self.scale is not None:
            w = w * self.scale[...]
        return x @ w


class DINOHead(nnx.Module):
    """DINO's projection head: MLP -> L2-normalise -> weight-normalised linear to K outputs.

    The MLP has ``num_layers`` Linear layers (in -> hidden -> ... -> bottleneck), exact GELU
    after each hidden one, BatchNorm before the GELU if ``use_bn``; weights start from a
    truncated normal with std 0.02, biases from 0 (the authors' ``DINOHead``). The last layer
    (:class:`WeightNormLinear`, ``last_layer``) has its norm fixed to 1 when
    ``norm_last_layer``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden_features: int = 2048,
        bottleneck_features: int = 256,
        num_layers: int = 3,
        use_bn: bool = False,
        norm_last_layer: bool = True,
        rngs: nnx.Rngs,
    ):
        if num_layers < 1:
            raise ValueError(f"DINOHead needs num_layers >= 1, got {num_layers}.")
        dims = [in_features] + [hidden_features] * (num_layers - 1) + [bottleneck_features]
        self.linears = nnx.List(
            nnx.Linear(a, b, kernel_init=_TRUNC_NORMAL, rngs=rngs)
            for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.norms = nnx.List(
            nnx.BatchNorm(hidden_features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)
            if use_bn
            else None
            for _ in range(num_layers - 1)
        )
        self.last_layer = WeightNormLinear(
            bottleneck_features, out_features, learn_norm=not norm_last_layer, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for linear, norm in zip(self.linears[:-1], self.norms, strict=True):
            x = linear(x)
            if norm is not None:
                x = norm(x)
            x = nnx.gelu(x, approximate=False)
        x = self.linears[-1](x)
        x = l2_normalize(x)
        return self.last_layer(x)


def dino_head(in_features: int, out_features: int, **kwargs) -> HeadDef:
    """A :class:`DINOHead` as a :class:`~ssl_jax.methods.networks.HeadDef`."""

    def build(rngs):
        return DINOHead(in_features, out_features, rngs=rngs, **kwargs)

    graphdef, _, _ = split_module(nnx.eval_shape(lambda: build(nnx.Rngs(0))))
    return HeadDef(graphdef=graphdef, build=build)


def embed_crops(parts: dict, head: str, params: dict, stats: dict, crops) -> tuple[jax.Array, dict]:
    """``parts[head]`` on the backbone features of ``crops``, in order; returns (out, stats).

    Consecutive crops of one shape are one backbone batch (the authors'
    ``MultiCropWrapper``: BatchNorm statistics per resolution, updated batch after batch);
    the head then runs once on all features concatenated.
    """
    groups = []
    for crop in crops:
        if groups and groups[-1][0].shape == crop.shape:
            groups[-1].append(crop)
        else:
            groups.append([crop])
    backbone_stats = stats["backbone"]
    features = []
    for group in groups:
        f, backbone_stats = parts["backbone"].apply(
            params["backbone"], backbone_stats, jnp.concatenate(group), train=True
        )
        features.append(f)
    out, head_stats = parts[head].apply(
        params[head], stats[head], jnp.concatenate(features), train=True
    )
    return out, {**stats, "backbone": backbone_stats, head: head_stats}


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
