"""data2vec 2.0 (Baevski et al., 2023): regress an EMA teacher's contextualised targets of the
unmasked image from several masked versions of it, through a light convolutional decoder.

- Teacher: an EMA of the student ViT (``method_state["target"]``), run on the whole image;
  the targets are the mean of its ``top_k`` last blocks' patch-token outputs, each instance
  normalised over the tokens (:func:`~ssl_jax.losses.data2vec_targets`), under
  ``stop_gradient``.
- Student: ``num_masks`` masked copies of every image ("multi-mask": the teacher runs once per
  image, its targets are shared by the copies), each with its own mask of ``mask_ratio`` of
  the patches; the encoder sees the visible patches only (``keep_indices``, as MAE).
- Decoder: :class:`~ssl_jax.models.Data2VecDecoder`, ``decoder_depth`` residual grouped 3x3
  convolutions with LayerNorm and GELU over the patch grid, a learned embedding at the masked
  positions.
- Loss: the squared error on the masked patches, summed over the ``D`` target features and
  scaled by ``1 / sqrt(D)`` (the authors' fairseq ``loss_scale`` default as recalled,
  unverified here; ``masked_mse * sqrt(D)``),
  averaged over the masked patches of every copy.
- ``update_state`` moves the teacher: ``m`` on a cosine from ``momentum`` to
  ``final_momentum``.

Differences from the paper, stated: masks are MAE's uniform random masking, not the paper's
inverse block masking (blocks of visible patches); the momentum rises on a cosine, not the
authors' linear anneal (0.9998 to 0.99999); the targets are the blocks' outputs (the
residual stream), where data2vec 1.0 took the feed-forward output before the last residual
connection; the mask-position input of the decoder is a learned embedding. The export is
the student backbone (the paper fine-tunes the student). https://arxiv.org/abs/2212.07525
"""

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.export import convert_input
from ssl_jax.losses import data2vec_targets, masked_mse
from ssl_jax.method import ONE_RAW_VIEW, Method, method_factory
from ssl_jax.methods.momentum import (
    check_export_network,
    init_target,
    make_momentum_schedule,
    momentum_update,
    target_export,
)
from ssl_jax.methods.networks import init_parts
from ssl_jax.methods.pretext_task import one_view, vit_patch_size
from ssl_jax.models import Data2VecDecoder, module_def
from ssl_jax.pretext import random_masking

TARGET_PARTS = ("backbone",)


def teacher_targets(backbone, target, target_stats, x, *, top_k, layer_norm_targets):
    """The teacher's targets ``(N, L, D)`` of the unmasked ``x``, without gradient."""
    out, _ = backbone.apply(target, target_stats, x, train=False, return_all=True)
    depth = sum(1 for name in out if name.startswith("block"))
    layers = jnp.stack([out[f"block{i}"][:, 1:] for i in range(depth - top_k + 1, depth + 1)])
    targets = data2vec_targets(layers, layer_norm_targets=layer_norm_targets)
    return jax.lax.stop_gradient(targets)


@method_factory("data2vec", views=ONE_RAW_VIEW)
def make_data2vec(
    backbone,
    views,
    *,
    input_spec: dict,
    total_steps: int | None = None,
    num_masks: int = 16,
    mask_ratio: float = 0.8,
    top_k: int = 10,
    layer_norm_targets: bool = False,
    decoder_dim: int = 768,
    decoder_depth: int = 5,
    decoder_groups: int = 16,
    momentum: float = 0.9998,
    final_momentum: float = 0.99999,
    momentum_schedule: str = "cosine",
    export_network: str = "online",
) -> Method:
    """data2vec 2.0 on a ViT ``backbone``: the one view ``views(images_uint8, key) -> x`` in
    [0, 1], ``num_masks`` masked copies per image (``mask_ratio`` of the patches hidden), the
    mean of the EMA teacher's ``top_k`` instance-normalised top blocks as targets."""
    patch = vit_patch_size(backbone, "data2vec")
    size = input_spec["size"]
    if size % patch:
        raise ValueError(f"data2vec's input size {size} is not a multiple of the patch {patch}.")
    network = check_export_network(export_network, "data2vec", "EMA teacher")
    depth = _depth(backbone)
    if not 1 <= top_k <= depth:
        raise ValueError(
            f"data2vec: method.top_k={top_k} must be in [1, {depth}], the backbone's depth."
        )
    if num_masks < 1:
        raise ValueError(f"data2vec: method.num_masks={num_masks} must be >= 1 (16 in the paper).")
    grid = (size // patch, size // patch)
    num_patches = grid[0] * grid[1]
    random_masking(jax.random.key(0), 1, num_patches, mask_ratio=mask_ratio)  # checks the ratio
    dim = backbone.feature_dim
    decoder = module_def(
        lambda rngs: Data2VecDecoder(
            num_patches=num_patches,
            encoder_dim=dim,
            decoder_dim=decoder_dim,
            out_dim=dim,
            depth=decoder_depth,
            grid_size=grid,
            groups=decoder_groups,
            rngs=rngs,
        )
    )
    parts = {"backbone": backbone, "decoder": decoder}
    schedule = make_momentum_schedule(
        momentum_schedule,
        momentum=momentum,
        final_momentum=final_momentum,
        total_steps=total_steps,
        method="data2vec",
    )

    def init(key):
        params, stats = init_parts(parts, key)
        return params, {"batch_stats": stats, **init_target(params, stats, TARGET_PARTS)}

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        view_key, mask_key = jax.random.split(key)
        x = convert_input(one_view(views, batch["images"], view_key, "data2vec"), input_spec)
        targets = teacher_targets(
            backbone,
            jax.lax.stop_gradient(method_state["target"]["backbone"]),
            method_state["target_batch_stats"]["backbone"],
            x,
            top_k=top_k,
            layer_norm_targets=layer_norm_targets,
        )
        copies = jnp.repeat(x, num_masks, axis=0)  # image i's copies are rows i*M ... i*M+M-1
        masking = random_masking(mask_key, copies.shape[0], num_patches, mask_ratio=mask_ratio)
        stats = method_state["batch_stats"]
        encoded, backbone_stats = backbone.apply(
            params["backbone"],
            stats["backbone"],
            copies,
            train=True,
            return_all=True,
            keep_indices=masking.keep_indices,
        )
        pred, decoder_stats = decoder.apply(
            params["decoder"],
            stats["decoder"],
            encoded["tokens"],
            train=True,
            ids_restore=masking.ids_restore,
        )
        shared = jnp.repeat(targets, num_masks, axis=0)
        value = masked_mse(pred, shared, masking.mask) * jnp.sqrt(float(dim))
        new_state = {
            **method_state,
            "batch_stats": {"backbone": backbone_stats, "decoder": decoder_stats},
        }
        return value, (new_state, {"target_std": jnp.mean(jnp.std(targets, axis=1))})

    return Method(
        name="data2vec",
        init=init,
        loss=loss,
        update_state=momentum_update(schedule, TARGET_PARTS),
        export=target_export(network),
        backbone=backbone,
        network=network,
        input_spec=input_spec,
        # a mean over as many masked patches of every copy; the teacher's targets are
        # per-image (instance norm over one image's tokens): a mean of per-example terms
        batch_terms="",
    )


def _depth(backbone) -> int:
    module = nnx.eval_shape(lambda: backbone.build(rngs=nnx.Rngs(0)))
    return len(module.blocks)
