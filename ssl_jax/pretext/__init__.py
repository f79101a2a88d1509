"""Pretext transforms: pure, jittable builders of ``(input, target)`` from unlabelled images.

Each runs inside the jitted train step on the accelerator, like the augmentations
(:mod:`ssl_jax.augment`): images are float NHWC in [0, 1], randomness comes from one key split
per example.

- :mod:`~ssl_jax.pretext.rotation`: the four rotations of every image (RotNet).
- :mod:`~ssl_jax.pretext.context`: a centre patch and one of its 8 neighbours (Doersch et al.).
- :mod:`~ssl_jax.pretext.jigsaw`: shuffled 3x3 tiles and a maximal-Hamming permutation set.
- :mod:`~ssl_jax.pretext.lab`, :mod:`~ssl_jax.pretext.colorization`: CIE Lab, quantised ab
  targets, class rebalancing and annealed-mean decoding (Zhang et al.).
- :mod:`~ssl_jax.pretext.masks`: inpainting masks (Context Encoders).
- :mod:`~ssl_jax.pretext.patches`: patches, random masking and pixel targets (MAE).
- :mod:`~ssl_jax.pretext.tokens`: BERT's masking of token sequences (text, int ids).
- :mod:`~ssl_jax.pretext.block_masks`: blockwise patch masks with a per-image ratio (iBOT, BEiT).
- :mod:`~ssl_jax.pretext.simmim`: random masking in mask patches coarser than the model's
  (SimMIM).
- :mod:`~ssl_jax.pretext.multiblock`: I-JEPA's multi-block context and target masks.
"""

from ssl_jax.pretext.block_masks import block_masks, draw_mask_ratios
from ssl_jax.pretext.colorization import (
    ab_gamut_bins,
    annealed_mean,
    colorization_inputs,
    colorize,
    empirical_ab_prior,
    quantize_ab,
    rebalance_weights,
    soft_encode_ab,
)
from ssl_jax.pretext.context import context_pairs
from ssl_jax.pretext.jigsaw import hamming_permutations, jigsaw_tiles, min_hamming_distance
from ssl_jax.pretext.lab import lab_to_rgb, rgb_to_lab
from ssl_jax.pretext.masks import (
    apply_mask,
    central_block_mask,
    random_block_masks,
    random_region_masks,
)
from ssl_jax.pretext.multiblock import MultiBlockMasks, multiblock_counts, multiblock_masks
from ssl_jax.pretext.patches import (
    normalized_patch_targets,
    patchify,
    random_masking,
    unpatchify,
)
from ssl_jax.pretext.rotation import rotate, rotate_batch
from ssl_jax.pretext.simmim import check_simmim_mask, simmim_mask, simmim_mask_count
from ssl_jax.pretext.tokens import MaskedTokens, corrupt_tokens, mask_tokens, max_predictions_for

__all__ = [
    "MaskedTokens",
    "MultiBlockMasks",
    "ab_gamut_bins",
    "annealed_mean",
    "apply_mask",
    "block_masks",
    "central_block_mask",
    "check_simmim_mask",
    "colorization_inputs",
    "colorize",
    "context_pairs",
    "corrupt_tokens",
    "draw_mask_ratios",
    "empirical_ab_prior",
    "hamming_permutations",
    "jigsaw_tiles",
    "lab_to_rgb",
    "mask_tokens",
    "max_predictions_for",
    "min_hamming_distance",
    "multiblock_counts",
    "multiblock_masks",
    "normalized_patch_targets",
    "patchify",
    "quantize_ab",
    "random_block_masks",
    "random_masking",
    "random_region_masks",
    "rebalance_weights",
    "rgb_to_lab",
    "rotate",
    "rotate_batch",
    "simmim_mask",
    "simmim_mask_count",
    "soft_encode_ab",
    "unpatchify",
]
