"""I-JEPA (Assran et al., 2023): from one context block of an image, predict the target
encoder's features of several target blocks of the same image. https://arxiv.org/abs/2301.08243

One view (random resized crop, no other augmentation: the paper's point), normalised through
the export's input spec. Per batch, :func:`~ssl_jax.pretext.multiblock_masks` draws 4 target
blocks (scale 0.15–0.2, aspect ratio 0.75–1.5) and a context block (scale 0.85–1) with the
target patches removed, as the authors' collator; token counts are static (that module says
how). The **context encoder** (the online ViT backbone) sees only the context patches
(``keep_indices``); the **target encoder** (its EMA, ``method_state["target"]``, no gradient)
sees the whole image, and its final tokens, layer-normed again over the features without
affine parameters (the authors' ``F.layer_norm(h, (h.size(-1),))``), at the target patches
are the targets. The :class:`~ssl_jax.models.predictor.JEPAPredictor` predicts them from the
context tokens and mask tokens at the target positions, one pass per block; the loss is
:func:`~ssl_jax.losses.ijepa_loss`, smooth L1 as the authors' code (``loss="l2"``: the
paper's eq. 1). After each optimizer step the target moves with momentum rising linearly
from 0.996 to 1 (the authors' ``momentum_scheduler``).

Differences from the authors: the backbone is this library's ViT, with a [CLS] token and
learnable position embeddings where theirs has neither [CLS] nor learnable (sine-cosine)
ones; the [CLS] token goes through both encoders but is not given to the predictor nor
predicted. The paper evaluates the target encoder, average-pooled (``export.network="target"``,
``model.pool="mean"`` in the configs).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.export import convert_input
from ssl_jax.losses import ijepa_loss
from ssl_jax.losses.jepa import IJEPA_LOSSES
from ssl_jax.method import ONE_RAW_VIEW, Method, method_factory
from ssl_jax.methods.momentum import (
    check_export_network,
    init_target,
    make_momentum_schedule,
    momentum_update,
    target_export,
)
from ssl_jax.methods.networks import init_parts
from ssl_jax.methods.pretext_task import one_view
from ssl_jax.models import module_def
from ssl_jax.models.predictor import JEPAPredictor
from ssl_jax.pretext import multiblock_counts, multiblock_masks

TARGET_PARTS = ("backbone",)
LAYER_NORM_EPSILON = 1e-5  # torch.nn.functional.layer_norm's default


def vit_shape(backbone, method: str) -> tuple[int, int]:
    """``(patch_size, num_heads)`` of a ViT ``backbone``; a clear error for other backbones."""
    module = nnx.eval_shape(lambda: backbone.build(rngs=nnx.Rngs(0)))
    if not hasattr(module, "patch_size"):
        raise ValueError(
            f"{method} needs a ViT backbone (model.backbone=vit_tiny/vit_small/.../vit_huge), "
            f"got {type(module).__name__}."
        )
    return int(module.patch_size), int(module.blocks[0].attn.num_heads)


def feature_layer_norm(x: jax.Array) -> jax.Array:
    """LayerNorm over the last axis without scale or bias (the authors' target transform)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.var(x, axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + LAYER_NORM_EPSILON)


def gather_tokens(tokens: jax.Array, indices: jax.Array) -> jax.Array:
    """``tokens[n, indices[n, ...]]``: ``(N, L, D)`` and ``(N, ...)`` -> ``(N, ..., D)``."""
    rows = jnp.arange(tokens.shape[0]).reshape((-1,) + (1,) * (indices.ndim - 1))
    return tokens[rows, indices]


@method_factory("ijepa", views=ONE_RAW_VIEW)
def make_ijepa(
    backbone,
    views,
    *,
    input_spec: dict,
    total_steps: int | None = None,
    export_network: str = "online",
    predictor_dim: int = 384,
    predictor_depth: int = 12,
    predictor_heads: int = 0,
    num_targets: int = 4,
    target_scale: tuple = (0.15, 0.2),
    target_aspect_ratio: tuple = (0.75, 1.5),
    context_scale: tuple = (0.85, 1.0),
    context_keep: float = 0.3,
    min_keep: int = 10,
    loss: str = "smooth_l1",
    momentum: float = 0.996,
    final_momentum: float = 1.0,
    momentum_schedule: str = "linear",
) -> Method:
    """I-JEPA on a ViT ``backbone`` and the one-view function ``views(images_uint8, key) -> x``
    in [0, 1]. The predictor: ``predictor_depth`` blocks of width ``predictor_dim`` and
    ``predictor_heads`` heads (0: the encoder's, as the authors). The masks:
    :func:`~ssl_jax.pretext.multiblock_masks` with ``num_targets``, ``target_scale``,
    ``target_aspect_ratio``, ``context_scale``, ``context_keep`` and ``min_keep`` (the
    authors' config: 10; an 8x8 grid needs less than 9). ``loss``: ``"smooth_l1"`` (the
    authors' code) or ``"l2"`` (the paper). The EMA target's momentum goes from ``momentum``
    to ``final_momentum`` over ``total_steps`` (``momentum_schedule``: ``linear``, as the
    authors, ``cosine`` or ``constant``). ``export_network``: ``"online"`` (the context
    encoder) or ``"target"`` (the paper's evaluation)."""
    network = check_export_network(export_network, "I-JEPA", "EMA target encoder")
    if loss not in IJEPA_LOSSES:
        raise ValueError(f"method.loss={loss!r} is unknown; valid: {list(IJEPA_LOSSES)}.")
    patch, encoder_heads = vit_shape(backbone, "I-JEPA")
    size = input_spec["size"]
    if size % patch:
        raise ValueError(f"I-JEPA's input size {size} is not a multiple of the patch size {patch}.")
    grid = (size // patch, size // patch)
    mask_options = dict(
        num_targets=num_targets,
        target_scale=tuple(target_scale),
        target_aspect_ratio=tuple(target_aspect_ratio),
        context_scale=tuple(context_scale),
        context_keep=context_keep,
        min_keep=min_keep,
    )
    counts = multiblock_counts(
        grid, **{k: v for k, v in mask_options.items() if k != "num_targets"}
    )
    num_context = counts[0]
    schedule = make_momentum_schedule(
        momentum_schedule,
        momentum=momentum,
        final_momentum=final_momentum,
        total_steps=total_steps,
        method="I-JEPA",
    )
    predictor = module_def(
        lambda rngs: JEPAPredictor(
            grid_size=grid,
            encoder_dim=backbone.feature_dim,
            predictor_dim=predictor_dim,
            depth=predictor_depth,
            num_heads=predictor_heads or encoder_heads,
            rngs=rngs,
        )
    )
    parts = {"backbone": backbone, "predictor": predictor}

    def init(key):
        params, stats = init_parts(parts, key)
        return params, {"batch_stats": stats, **init_target(params, stats, TARGET_PARTS)}

    def targets_of(method_state, x, masks):
        target = jax.lax.stop_gradient(method_state["target"]["backbone"])
        out, _ = backbone.apply(
            target, method_state["target_batch_stats"]["backbone"], x, train=False,
            return_all=True,
        )  # fmt: skip
        h = feature_layer_norm(out["tokens"][:, 1:])  # patch tokens, [CLS] dropped
        return jax.lax.stop_gradient(gather_tokens(h, masks.targets))

    def predict(params, stats, x, masks, key):
        out, backbone_stats = backbone.apply(
            params["backbone"], stats["backbone"], x, train=True, return_all=True,
            keep_indices=masks.context, rngs=key,
        )  # fmt: skip
        pred, predictor_stats = predictor.apply(
            params["predictor"], stats["predictor"], out["tokens"][:, 1:], train=True,
            context_indices=masks.context, target_indices=masks.targets,
        )  # fmt: skip
        return pred, {"backbone": backbone_stats, "predictor": predictor_stats}

    def loss_fn(params, method_state, batch, key, step, frozen):
        del step, frozen
        view_key, mask_key, drop_key = jax.random.split(key, 3)
        x = convert_input(one_view(views, batch["images"], view_key, "ijepa"), input_spec)
        masks = multiblock_masks(mask_key, x.shape[0], grid, **mask_options)
        h = targets_of(method_state, x, masks)
        pred, stats = predict(params, method_state["batch_stats"], x, masks, drop_key)
        value = ijepa_loss(pred, h, kind=loss)
        metrics = {
            "context_patches_dropped": jnp.mean(masks.context_count - num_context),
            "context_relaxed": jnp.mean(masks.relaxed > 0),
            "target_std": jnp.mean(jnp.std(h.reshape(-1, h.shape[-1]), axis=0)),
        }
        return value, ({**method_state, "batch_stats": stats}, metrics)

    return Method(
        name="ijepa",
        init=init,
        loss=loss_fn,
        update_state=momentum_update(schedule, TARGET_PARTS),
        export=target_export(network),
        backbone=backbone,
        network=network,
        input_spec=input_spec,
        batch_terms=(
            "the target blocks' size is drawn once per batch (the authors' collator), so "
            "micro-batches would draw sizes of their own"
        ),
    )
