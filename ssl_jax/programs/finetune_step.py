"""Fine-tuning as a method for the shared train step: a backbone and a head trained together.

:func:`make_classifier` returns a :class:`~ssl_jax.method.Method` over
``params = {"backbone", "head"}`` and ``method_state = {"backbone", "head"}`` (batch
statistics), so :mod:`ssl_jax.programs.setup` builds its sharded state and jitted step exactly
as it does for pretraining; :func:`make_logits_fn` is its evaluation forward pass. It is defined
here, not in ``ssl_jax.methods``: downstream programs reach an encoder only through its export
and do not import the pretraining methods (``tests/test_imports.py``).

The supervised view is made on the device inside the step: uint8 -> [0, 1] -> Inception-style
random resized crop to the export's input size -> horizontal flip -> the export's colour space
and normalisation (:func:`ssl_jax.export.preprocess`, the evaluation path, on the crop). Then
optional Mixup / CutMix (:mod:`ssl_jax.augment.mix`) and the cross-entropy against (smoothed)
one-hot targets. BatchNorm runs in train mode on the global batch.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ssl_jax.augment import (
    mix_batch,
    one_hot_targets,
    random_horizontal_flip,
    random_resized_crop,
    to_unit_float,
)
from ssl_jax.export import HEAD_KINDS, make_head, make_head_spec, make_input_spec, preprocess
from ssl_jax.method import Method, no_state_update
from ssl_jax.models import ModuleDef

HEADS = HEAD_KINDS


def get_head(name: str, in_features: int, num_classes: int) -> ModuleDef:
    """The head called ``name`` (:data:`HEADS`): ``linear``, a zero-initialised
    :class:`~ssl_jax.models.LinearClassifier` (SimCLR's ``zero_init_logits_layer``: every class
    starts equally likely), or ``bn_linear``, the same after an affine-free BatchNorm of the
    features (MAE's head). :func:`ssl_jax.export.make_head` builds it, as it rebuilds the head
    of a fine-tuned export."""
    if name not in HEADS:
        raise ValueError(f"finetune.head={name!r} is not a head; valid: {list(HEADS)}.")
    return make_head(make_head_spec(name, num_classes), in_features)


def supervised_view(
    images: jax.typing.ArrayLike,
    key: jax.Array,
    input_spec: Mapping[str, Any],
    *,
    crop_scale: Sequence[float] = (0.08, 1.0),
    crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
    flip_prob: float = 0.5,
) -> jax.Array:
    """uint8 ``(N, H, W, 3)`` -> the backbone's training input ``(N, size, size, channels)``:
    random resized crop to ``input_spec["size"]``, flip, then the spec's colour space and
    normalisation (the evaluation preprocessing applied to the crop)."""
    crop_key, flip_key = jax.random.split(key)
    x = random_resized_crop(
        to_unit_float(images),
        crop_key,
        size=input_spec["size"],
        scale=tuple(crop_scale),
        ratio=tuple(crop_ratio),
    )
    x = random_horizontal_flip(x, flip_key, prob=flip_prob)
    return preprocess(x, input_spec)  # its center crop of a side-`size` image is the identity


def make_classifier(
    backbone: ModuleDef,
    input_spec: Mapping[str, Any],
    *,
    num_classes: int,
    head: ModuleDef | None = None,
    label_smoothing: float = 0.0,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    switch_prob: float = 0.5,
    crop_scale: Sequence[float] = (0.08, 1.0),
    crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
    flip_prob: float = 0.5,
    backbone_rngs: bool = False,
) -> Method:
    """Fine-tuning of ``backbone`` with ``head`` (default: :func:`get_head` ``"linear"``) on
    its pooled features, for images the export's ``input_spec`` describes. ``export`` returns
    the backbone's arrays and the head's (``"head"``: ``{"params", "batch_stats"}``).

    The loss is the mean softmax cross-entropy ``-sum_k t_k log softmax(z)_k`` of the logits
    ``z`` of the supervised view (:func:`supervised_view`) against targets ``t``: one-hot with
    ``label_smoothing`` (``(1 - eps) one_hot + eps / K``), then mixed by Mixup / CutMix
    (``mixup_alpha``, ``cutmix_alpha``, 0 = off; :func:`ssl_jax.augment.mix_batch`). Logged:
    ``train_top1`` (%, the batch's argmax against its true labels). ``backbone_rngs``: the
    training forward pass gives the backbone a key (``rngs=``) for its dropout / drop path
    (a ViT built with ``drop_rate`` or ``drop_path_rate``).
    """
    if num_classes < 2:
        raise ValueError(f"Fine-tuning needs at least 2 classes, got {num_classes}.")
    input_spec = make_input_spec(**input_spec)
    head = head if head is not None else get_head("linear", backbone.feature_dim, num_classes)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing!r}.")
    for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
        if not value >= 0.0:
            raise ValueError(f"{name} must be >= 0 (0 turns it off); got {value!r}.")
    mix = dict(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, switch_prob=switch_prob)
    view = dict(crop_scale=crop_scale, crop_ratio=crop_ratio, flip_prob=flip_prob)

    def init(key):
        backbone_key, head_key = jax.random.split(key)
        backbone_params, backbone_stats = backbone.init(backbone_key)
        head_params, head_stats = head.init(head_key)
        params = {"backbone": backbone_params, "head": head_params}
        return params, {"backbone": backbone_stats, "head": head_stats}

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        view_key, mix_key = jax.random.split(key)
        labels = batch["labels"]
        x = supervised_view(batch["images"], view_key, input_spec, **view)
        targets = one_hot_targets(labels, num_classes, label_smoothing=label_smoothing)
        x, targets = mix_batch(x, targets, mix_key, **mix)
        drop_key = jax.random.fold_in(key, 1) if backbone_rngs else None
        logits, method_state = _forward(backbone, head, params, method_state, x, True, drop_key)
        value = jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))
        top1 = 100.0 * jnp.mean(jnp.argmax(logits, axis=-1) == labels)
        return value, (method_state, {"train_top1": top1})

    def export(params, method_state):
        head_arrays = {"params": params["head"], "batch_stats": method_state["head"]}
        return {
            "params": params["backbone"],
            "batch_stats": method_state["backbone"],
            "head": head_arrays,
        }

    return Method(
        name="finetune",
        init=init,
        loss=loss,
        update_state=no_state_update,
        export=export,
        backbone=backbone,
        input_spec=input_spec,
    )


def _forward(backbone, head, params, stats, x, train, key=None):
    """``(logits, stats)`` of the backbone and head; ``key``: the backbone's ``rngs``."""
    extra = {"rngs": key} if key is not None else {}
    features, backbone_stats = backbone.apply(
        params["backbone"], stats["backbone"], x, train=train, **extra
    )
    logits, head_stats = head.apply(params["head"], stats["head"], features, train=train)
    return logits, {"backbone": backbone_stats, "head": head_stats}


def make_logits_fn(
    backbone: ModuleDef, head: ModuleDef, input_spec: Mapping[str, Any]
) -> Callable[[dict, jax.Array], jax.Array]:
    """``logits(arrays, images_uint8) -> (N, K)`` float32: the evaluation forward pass of a
    :func:`make_classifier` classifier (``input_spec``'s preprocessing, eval-mode BatchNorm) on
    ``arrays = {"params", "method_state"}`` of its train state."""
    input_spec = make_input_spec(**input_spec)

    def logits(arrays, images):
        x = preprocess(images, input_spec)
        out, _ = _forward(backbone, head, arrays["params"], arrays["method_state"], x, False)
        return out.astype(jnp.float32)

    return logits
