"""Masked autoencoders (He et al. 2022): reconstruct the pixels of the 75% of patches a ViT
encoder never sees. https://arxiv.org/abs/2111.06377

The encoder runs on the kept patches only (``keep_indices``, no mask tokens); a light
decoder (:class:`~ssl_jax.models.MAEDecoder`) puts mask tokens back in place and predicts every
patch; the loss is the mean squared error on the removed patches only, against each patch's
normalised pixels with ``norm_pix_loss`` (the paper's default in its best results). Pixels are
the export's normalised input (the paper's targets are the ImageNet-normalised image).
"""

import jax
import jax.numpy as jnp

from ssl_jax.export import convert_input
from ssl_jax.losses import masked_mse
from ssl_jax.method import ONE_RAW_VIEW, Method, method_factory
from ssl_jax.methods.pretext_task import (
    eval_view,
    one_view,
    pretext_method,
    to_display,
    vit_patch_size,
)
from ssl_jax.models import MAEDecoder, module_def
from ssl_jax.pretext import normalized_patch_targets, patchify, random_masking, unpatchify


@method_factory("mae", views=ONE_RAW_VIEW)
def make_mae(
    backbone,
    views,
    *,
    input_spec: dict,
    mask_ratio: float = 0.75,
    decoder_dim: int = 512,
    decoder_depth: int = 8,
    decoder_heads: int = 16,
    norm_pix_loss: bool = True,
) -> Method:
    """MAE on a ViT ``backbone``: the one view ``views(images_uint8, key) -> x`` in [0, 1],
    ``mask_ratio`` of its patches removed per image, a ``decoder_depth``-block decoder of
    width ``decoder_dim`` (``decoder_heads`` heads) predicting every patch's pixels."""
    patch = vit_patch_size(backbone, "MAE")
    size, channels = input_spec["size"], input_spec["channels"]
    if size % patch:
        raise ValueError(f"MAE's input size {size} is not a multiple of the patch size {patch}.")
    grid = (size // patch, size // patch)
    num_patches = grid[0] * grid[1]
    random_masking(jax.random.key(0), 1, num_patches, mask_ratio=mask_ratio)  # checks the ratio
    decoder = module_def(
        lambda rngs: MAEDecoder(
            num_patches=num_patches,
            encoder_dim=backbone.feature_dim,
            decoder_dim=decoder_dim,
            depth=decoder_depth,
            num_heads=decoder_heads,
            patch_dim=patch * patch * channels,
            grid_size=grid,
            rngs=rngs,
        )
    )
    parts = {"backbone": backbone, "decoder": decoder}

    def reconstruct(params, stats, x, key, train):
        masking = random_masking(key, x.shape[0], num_patches, mask_ratio=mask_ratio)
        encoded, backbone_stats = backbone.apply(
            params["backbone"],
            stats["backbone"],
            x,
            train=train,
            return_all=True,
            keep_indices=masking.keep_indices,
        )
        pred, decoder_stats = decoder.apply(
            params["decoder"],
            stats["decoder"],
            encoded["tokens"],
            train=train,
            ids_restore=masking.ids_restore,
        )
        return pred, masking, {"backbone": backbone_stats, "decoder": decoder_stats}

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        view_key, mask_key = jax.random.split(key)
        x = convert_input(one_view(views, batch["images"], view_key, "mae"), input_spec)
        pred, masking, new_stats = reconstruct(
            params, method_state["batch_stats"], x, mask_key, True
        )
        target = patchify(x, patch)
        if norm_pix_loss:
            target = normalized_patch_targets(target)
        value = masked_mse(pred, target, masking.mask)
        return value, ({"batch_stats": new_stats}, {})

    def visualize(params, method_state, images, key):
        """The image, its visible patches (removed ones at the mean) and the reconstruction
        with the visible patches pasted back; with ``norm_pix_loss`` the predicted patches
        are shown with each true patch's mean and std (the MAE authors' visualisation)."""
        x = convert_input(eval_view(images, input_spec), input_spec)
        pred, masking, _ = reconstruct(params, method_state["batch_stats"], x, key, False)
        patches = patchify(x, patch)
        if norm_pix_loss:
            mean = patches.mean(-1, keepdims=True)
            pred = pred * jnp.sqrt(patches.var(-1, ddof=1, keepdims=True) + 1e-6) + mean
        removed = masking.mask[..., None]
        shape = (size, size, channels)
        visible = unpatchify(jnp.where(removed, 0.0, patches), patch, *shape)
        output = unpatchify(jnp.where(removed, pred, patches), patch, *shape)
        return {
            "original": to_display(x, input_spec),
            "input": to_display(visible, input_spec),
            "output": to_display(output, input_spec),
        }

    # masked_mse: a mean over masked patches, as many in every image: a per-example mean
    return pretext_method("mae", parts, loss, input_spec, visualize=visualize, batch_terms="")
