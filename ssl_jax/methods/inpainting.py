"""Context Encoders (Pathak et al. 2016): reconstruct a removed region of an image from its
surroundings. https://arxiv.org/abs/1604.07379

The backbone sees the image with the region filled with the dataset mean (0 after the
export's normalisation, as the paper fills with the mean); a
:class:`~ssl_jax.models.ConvDecoder` upsamples its last stage back to the full image; the loss
is the L2 reconstruction error on the removed pixels only (the paper's reconstruction term;
its adversarial term is left out, as it would need a discriminator and its own update, and
the paper shows the features from the L2 term alone). Masks (``mask``): the central block
(``mask_fraction`` of each side), random blocks or random regions
(:mod:`ssl_jax.pretext.masks`; the regions are smooth random blobs standing in for the
paper's PASCAL shapes). The paper's channel-wise fully connected bottleneck is not used: the
decoder reads the backbone's last feature map directly.
"""

import jax
import jax.numpy as jnp

from ssl_jax.export import convert_input
from ssl_jax.losses import masked_mse
from ssl_jax.method import ONE_RAW_VIEW, Method, method_factory
from ssl_jax.methods.pretext_task import (
    eval_view,
    feature_decoder,
    one_view,
    pretext_method,
    to_display,
)
from ssl_jax.pretext import apply_mask, central_block_mask, random_block_masks, random_region_masks

MASKS = ("center", "blocks", "regions")


@method_factory("inpainting", views=ONE_RAW_VIEW)
def make_inpainting(
    backbone,
    views,
    *,
    input_spec: dict,
    mask: str = "center",
    mask_fraction: float = 0.5,
    num_blocks: int = 4,
    block_fraction: float = 0.25,
    region_area: float = 0.25,
    feature_layer: str = "stage4",
    decoder_width: int = 64,
) -> Method:
    """Inpainting on ``backbone``: the one view ``views(images_uint8, key) -> x`` in [0, 1]
    with a ``mask`` region removed, reconstructed by a ConvDecoder of width ``decoder_width``
    from the backbone's ``feature_layer`` map; ``input_spec`` is the export's."""
    if mask not in MASKS:
        raise ValueError(f"inpainting mask={mask!r} is not one of {MASKS}.")
    size, channels = input_spec["size"], input_spec["channels"]
    decoder = feature_decoder(
        backbone, input_spec, feature_layer, channels, size, width=decoder_width
    )
    parts = {"backbone": backbone, "decoder": decoder}

    def masks(key, n):
        if mask == "center":
            block = central_block_mask(size, size, fraction=mask_fraction)
            return jnp.broadcast_to(block, (n, size, size))
        if mask == "blocks":
            return random_block_masks(
                key, n, size, size, num_blocks=num_blocks, block_fraction=block_fraction
            )
        return random_region_masks(key, n, size, size, area=region_area)

    masks(jax.random.key(0), 1)  # checks the mask settings before anything is compiled

    def fill_in(params, stats, x, removed, train):
        features, backbone_stats = backbone.apply(
            params["backbone"], stats["backbone"], apply_mask(x, removed, fill=0.0), train=train,
            return_all=True,
        )  # fmt: skip
        pred, decoder_stats = decoder.apply(
            params["decoder"], stats["decoder"], features[feature_layer], train=train
        )
        return pred, {"backbone": backbone_stats, "decoder": decoder_stats}

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        view_key, mask_key = jax.random.split(key)
        x = convert_input(one_view(views, batch["images"], view_key, "inpainting"), input_spec)
        removed = masks(mask_key, x.shape[0])
        pred, new_stats = fill_in(params, method_state["batch_stats"], x, removed, True)
        value = masked_mse(pred, x, removed)
        return value, ({"batch_stats": new_stats}, {})

    def visualize(params, method_state, images, key):
        """The image, the network's input (the region at the mean) and the region filled
        with the reconstruction."""
        x = convert_input(eval_view(images, input_spec), input_spec)
        removed = masks(key, x.shape[0])
        pred, _ = fill_in(params, method_state["batch_stats"], x, removed, False)
        return {
            "original": to_display(x, input_spec),
            "input": to_display(apply_mask(x, removed, fill=0.0), input_spec),
            "output": to_display(jnp.where(removed[..., None], pred, x), input_spec),
        }

    return pretext_method("inpainting", parts, loss, input_spec, visualize=visualize)
