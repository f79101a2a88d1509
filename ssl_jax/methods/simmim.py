"""SimMIM (Xie et al., 2022): regress the raw pixels of masked patches with a linear head.

A ViT encoder sees the whole image with the masked patches' embeddings replaced by a learned
mask token (before the position embeddings, the ViT's ``token_mask``); the masks are
:func:`~ssl_jax.pretext.simmim_mask` (random 32 px mask patches, 60% of them, in the paper); a
linear layer maps every final patch token to its patch's ``p * p * C`` pixels (the authors'
1x1 convolution and pixel shuffle); the loss is the L1 error on the masked patches only
(:func:`~ssl_jax.losses.masked_l1`) against the network's normalised input pixels (the
authors' targets are the ImageNet-normalised image). https://arxiv.org/abs/2111.09886

The mask token belongs to pretraining only: the encoder is the configured backbone with a
``mask_token`` parameter added (the backbone's own if it was built with ``mask_token=True``,
else a new one, normal with std 0.02 as the authors' ``trunc_normal_(std=.02)``), and the
export is the backbone without it, so downstream programs rebuild the plain backbone from
the export's spec.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.export import convert_input
from ssl_jax.losses import masked_l1
from ssl_jax.method import ONE_RAW_VIEW, Method, method_factory, no_state_update
from ssl_jax.methods.common import make_init
from ssl_jax.methods.pretext_task import eval_view, one_view, to_display, vit_patch_size
from ssl_jax.models import module_def
from ssl_jax.pretext import check_simmim_mask, patchify, simmim_mask, unpatchify


def with_mask_token(module: nnx.Module, rngs: nnx.Rngs) -> nnx.Module:
    """``module`` (a VisionTransformer) with a learned ``mask_token`` ``(1, 1, D)`` if it has
    none."""
    if getattr(module, "mask_token", None) is None:
        dim = module.feature_dim
        token = 0.02 * jax.random.normal(rngs.params(), (1, 1, dim), jnp.float32)
        module.mask_token = nnx.data(nnx.Param(token))
    return module


def without_mask_token(params: nnx.State) -> nnx.State:
    """The encoder's params without the mask token: the plain backbone's params."""
    return nnx.State({k: v for k, v in params.raw_mapping.items() if k != "mask_token"})


@method_factory("simmim", views=ONE_RAW_VIEW)
def make_simmim(
    backbone,
    views,
    *,
    input_spec: dict,
    mask_ratio: float = 0.6,
    mask_patch_size: int = 32,
) -> Method:
    """SimMIM on a ViT ``backbone``: the one view ``views(images_uint8, key) -> x`` in [0, 1],
    ``mask_ratio`` of its ``mask_patch_size`` px mask patches masked per image, a linear
    head to pixels and the L1 loss on the masked patches."""
    patch = vit_patch_size(backbone, "SimMIM")
    size, channels = input_spec["size"], input_spec["channels"]
    if size % patch:
        raise ValueError(f"SimMIM's input size {size} is not a multiple of the patch {patch}.")
    check_simmim_mask(size, mask_patch_size, patch, mask_ratio)
    encoder = module_def(lambda rngs: with_mask_token(backbone.build(rngs=rngs), rngs))
    patch_dim = patch * patch * channels
    decoder = module_def(lambda rngs: nnx.Linear(backbone.feature_dim, patch_dim, rngs=rngs))
    parts = {"backbone": encoder, "decoder": decoder}

    def reconstruct(params, stats, x, key, train):
        mask = simmim_mask(
            key,
            x.shape[0],
            size,
            mask_patch_size=mask_patch_size,
            model_patch_size=patch,
            mask_ratio=mask_ratio,
        )
        encoded, backbone_stats = encoder.apply(
            params["backbone"], stats["backbone"], x, train=train, return_all=True, token_mask=mask
        )
        pred, decoder_stats = decoder.apply(
            params["decoder"], stats["decoder"], encoded["tokens"][:, 1:], train=train
        )
        return pred, mask, {"backbone": backbone_stats, "decoder": decoder_stats}

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        view_key, mask_key = jax.random.split(key)
        x = convert_input(one_view(views, batch["images"], view_key, "simmim"), input_spec)
        pred, mask, new_stats = reconstruct(params, method_state["batch_stats"], x, mask_key, True)
        value = masked_l1(pred, patchify(x, patch), mask)
        return value, ({"batch_stats": new_stats}, {"masked_fraction": jnp.mean(mask)})

    def visualize(params, method_state, images, key):
        """The image, what the encoder saw (masked patches at the mean) and the prediction
        pasted into the masked patches."""
        x = convert_input(eval_view(images, input_spec), input_spec)
        pred, mask, _ = reconstruct(params, method_state["batch_stats"], x, key, False)
        patches = patchify(x, patch)
        removed = mask[..., None]
        shape = (size, size, channels)
        visible = unpatchify(jnp.where(removed, 0.0, patches), patch, *shape)
        output = unpatchify(jnp.where(removed, pred, patches), patch, *shape)
        return {
            "original": to_display(x, input_spec),
            "input": to_display(visible, input_spec),
            "output": to_display(output, input_spec),
        }

    def export(params, method_state):
        return {
            "params": without_mask_token(params["backbone"]),
            "batch_stats": method_state["batch_stats"]["backbone"],
        }

    return Method(
        name="simmim",
        init=make_init(parts),
        loss=loss,
        update_state=no_state_update,
        export=export,
        backbone=backbone,
        input_spec=input_spec,
        visualize=visualize,
        # masked_l1 over as many masked patches in every image: a mean of per-example terms
        batch_terms="",
    )
