"""SimMIM's random masking (Xie et al., 2022): square mask patches coarser than the model's.

The image is divided into ``(input_size / mask_patch_size)^2`` mask patches (32 px in the
paper); exactly ``ceil(mask_ratio * count)`` of them, a uniformly random subset drawn per image,
are masked (the paper's default ratio 0.6), and each masked mask patch masks all the
``(mask_patch_size / model_patch_size)^2`` model patches it covers. This is the authors'
``MaskGenerator`` (``np.random.permutation`` of the mask patches, the first ``mask_count``
masked, then repeated ``scale`` times along both axes); the paper finds a mask patch larger than
the model's patch (32 px for ViT-B/16's 16 px) matters more than the ratio.

Masks are ``(N, L)`` bool over the model's patches in row-major order, ``True`` where masked:
the layout of :func:`ssl_jax.pretext.patchify` and of the ViT's ``token_mask``.

Reference: Xie et al., "SimMIM: A Simple Framework for Masked Image Modeling", CVPR 2022.
https://arxiv.org/abs/2111.09886
"""

import math

import jax
import jax.numpy as jnp


def simmim_mask_count(input_size: int, mask_patch_size: int, mask_ratio: float) -> int:
    """How many of the ``(input_size // mask_patch_size)^2`` mask patches are masked:
    ``ceil(count * mask_ratio)``, as the authors' generator."""
    count = (input_size // mask_patch_size) ** 2
    return int(math.ceil(count * mask_ratio))


def check_simmim_mask(
    input_size: int, mask_patch_size: int, model_patch_size: int, mask_ratio: float
) -> None:
    """``ValueError`` for sizes the generator cannot tile or a ratio masking none or all."""
    if mask_patch_size < model_patch_size or mask_patch_size % model_patch_size:
        raise ValueError(
            f"SimMIM's mask_patch_size={mask_patch_size} must be a multiple of the model's "
            f"patch size {model_patch_size} (32 for 16 px patches in the paper)."
        )
    if input_size % mask_patch_size:
        raise ValueError(
            f"SimMIM's mask_patch_size={mask_patch_size} must divide the input size "
            f"{input_size}; choose a divisor (e.g. {input_size // 4} or smaller)."
        )
    count = (input_size // mask_patch_size) ** 2
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"SimMIM's mask_ratio={mask_ratio} must be in (0, 1) (0.6 in the paper).")
    if simmim_mask_count(input_size, mask_patch_size, mask_ratio) >= count:
        raise ValueError(
            f"SimMIM's mask_ratio={mask_ratio} masks all {count} mask patches of a "
            f"{input_size} px image with mask_patch_size={mask_patch_size}: use smaller mask "
            "patches or a lower ratio."
        )


def simmim_mask(
    key: jax.Array,
    num: int,
    input_size: int,
    *,
    mask_patch_size: int = 32,
    model_patch_size: int = 16,
    mask_ratio: float = 0.6,
) -> jax.Array:
    """``(num, L)`` bool masks over the ``L = (input_size // model_patch_size)^2`` model
    patches, one independent draw per image (``jax.random.split(key, num)``).

    Raises:
      ValueError: see :func:`check_simmim_mask`.
    """
    check_simmim_mask(input_size, mask_patch_size, model_patch_size, mask_ratio)
    side = input_size // mask_patch_size
    scale = mask_patch_size // model_patch_size
    masked = simmim_mask_count(input_size, mask_patch_size, mask_ratio)

    def one(k):
        order = jax.random.permutation(k, side * side)
        coarse = jnp.zeros(side * side, bool).at[order[:masked]].set(True)
        coarse = coarse.reshape(side, side)
        fine = jnp.repeat(jnp.repeat(coarse, scale, axis=0), scale, axis=1)
        return fine.reshape(-1)

    return jax.vmap(one)(jax.random.split(key, num))
