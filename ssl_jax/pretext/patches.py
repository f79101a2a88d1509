"""Patches, random patch masking and pixel targets for masked autoencoders (He et al., 2022).

MAE cuts an image into non-overlapping ``p`` x ``p`` patches, keeps a random 25% of them for the
encoder (a ViT that never sees the others: no mask tokens, no masked pixels) and has a light
decoder reconstruct the pixels of the removed ones, the loss counted on removed patches only
(:func:`ssl_jax.losses.reconstruction.masked_mse`), optionally against per-patch normalised
pixels (:func:`normalized_patch_targets`).

Patch order is the one shared by MAE's ``patchify`` and this library's ViT
(:class:`ssl_jax.models.vit.VisionTransformer`): patch ``j`` of an image with a ``(H / p)`` x
``(W / p)`` grid is grid row ``j // (W / p)``, column ``j % (W / p)`` (row-major), which is the
order of the ViT's patch-embedding outputs, position embeddings and ``keep_indices``. Within a
patch the ``p * p * C`` values are ordered (row, column, channel), MAE's
``einsum('nchpwq->nhwpqc')``, which is also the layout of the ViT's ``(p, p, C, D)`` patch
convolution kernel: token ``j`` is ``patchify(x)[:, j] @ kernel.reshape(p * p * C, D) + bias``.

Reference: He, Chen, Xie, Li, Dollár, Girshick, "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022, https://arxiv.org/abs/2111.06377; code
https://github.com/facebookresearch/mae (``models_mae.py``).
"""

from numbers import Real
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ssl_jax.augment._batch import check_size

__all__ = [
    "PatchMasking",
    "normalized_patch_targets",
    "patchify",
    "random_masking",
    "unpatchify",
]


def patchify(images: jax.typing.ArrayLike, patch_size: int) -> jax.Array:
    """``(N, H, W, C)`` images -> ``(N, L, p * p * C)`` patches, ``L = (H / p) (W / p)``.

    ``out[n, i * (W / p) + j]`` is the patch at grid row ``i``, column ``j`` (row-major, the
    ViT's token order), flattened in (row, column, channel) order:
    ``out[n, i * (W / p) + j, (a * p + b) * C + c] = images[n, i * p + a, j * p + b, c]``.
    MAE's ``patchify`` for NHWC input, and not limited to square images. :func:`unpatchify`
    inverts it exactly.

    Args:
      images: ``(N, H, W, C)``, ``H`` and ``W`` multiples of ``patch_size``; any dtype.
      patch_size: patch side ``p`` in pixels.

    Returns:
      ``(N, L, p * p * C)`` array of the images' dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
      >>> patchify(x, 2)[0, 1].tolist()  # the top-right 2x2 patch
      [2.0, 3.0, 6.0, 7.0]
    """
    images = jnp.asarray(images)
    p = check_size(patch_size, name="patch_size")
    if images.ndim != 4:
        raise ValueError(
            f"images must be an NHWC batch (N, H, W, C); got shape {images.shape}. For a single "
            "image pass images[None]."
        )
    n, height, width, channels = images.shape
    if height % p or width % p:
        raise ValueError(
            f"images of {height}x{width} pixels do not split into {p}x{p} patches; resize or "
            f"crop them to multiples of {p}."
        )
    rows, cols = height // p, width // p
    x = images.reshape(n, rows, p, cols, p, channels).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, rows * cols, p * p * channels)


def unpatchify(
    patches: jax.typing.ArrayLike, patch_size: int, height: int, width: int, channels: int
) -> jax.Array:
    """``(N, L, p * p * C)`` patches -> ``(N, H, W, C)`` images, the inverse of :func:`patchify`.

    Args:
      patches: ``(N, L, p * p * C)`` with ``L = (H / p) (W / p)``, in :func:`patchify`'s order.
      patch_size: patch side ``p``.
      height: image height ``H`` (a multiple of ``p``).
      width: image width ``W`` (a multiple of ``p``).
      channels: ``C``.

    Returns:
      ``(N, H, W, C)`` array of the patches' dtype.
    """
    patches = jnp.asarray(patches)
    p = check_size(patch_size, name="patch_size")
    height = check_size(height, name="height")
    width = check_size(width, name="width")
    channels = check_size(channels, name="channels")
    if height % p or width % p:
        raise ValueError(f"height {height} and width {width} must be multiples of patch_size {p}.")
    rows, cols = height // p, width // p
    if patches.ndim != 3 or patches.shape[1:] != (rows * cols, p * p * channels):
        raise ValueError(
            f"patches of {p}x{p}x{channels} for a {height}x{width} image must have shape "
            f"(N, {rows * cols}, {p * p * channels}); got {patches.shape}."
        )
    n = patches.shape[0]
    x = patches.reshape(n, rows, cols, p, p, channels).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, height, width, channels)


class PatchMasking(NamedTuple):
    """MAE's random masking of ``L`` patches, ``K`` kept, for ``N`` images.

    Attributes:
      keep_indices: int32 ``(N, K)``, the kept patch positions in shuffled (random) order, as
        MAE's ``ids_keep``; pass as the ViT's ``keep_indices``.
      mask: bool ``(N, L)``, ``True`` = removed (MAE's ``mask`` with 1 = remove), in patch order.
      ids_restore: int32 ``(N, L)``, the inverse of the shuffle: position ``j``'s rank in it.
    """

    keep_indices: jax.Array
    mask: jax.Array
    ids_restore: jax.Array


def random_masking(
    key: jax.Array, n: int, num_patches: int, *, mask_ratio: float = 0.75
) -> PatchMasking:
    """Random per-image masking of ``L = num_patches`` patches, MAE's ``random_masking``.

    For each image, ``L`` uniform noise values are argsorted into a random permutation
    ``shuffle`` of ``0 … L - 1``; the first ``K = int(L * (1 - mask_ratio))`` entries are kept
    (MAE's ``len_keep``, truncated as there), the other ``L - K`` removed:

    - ``keep_indices = shuffle[:, :K]``, left in shuffled order as MAE's ``ids_keep`` (not
      sorted). The ViT takes any order: it adds the position embeddings before gathering the
      kept tokens, so an encoder token knows its position whatever its place in the sequence;
    - ``mask[i, j] = True`` iff patch ``j`` is removed, i.e. ``ids_restore[i, j] >= K``;
    - ``ids_restore = argsort(shuffle)``, the inverse permutation. A decoder that appends
      ``L - K`` mask tokens to the ``K`` encoded tokens (in ``keep_indices`` order) recovers
      patch order with ``take_along_axis(tokens, ids_restore[..., None], axis=1)``.

    The key is split per image (``jax.random.split(key, n)``), so rows are independent draws.

    Args:
      key: PRNG key.
      n: number of images ``N``.
      num_patches: patches per image ``L``.
      mask_ratio: fraction removed, in [0, 1) (0.75 in MAE); must keep ``K >= 1``.

    Returns:
      :class:`PatchMasking` ``(keep_indices, mask, ids_restore)``; unpacks as a tuple.

    Examples:
      >>> import jax
      >>> keep, mask, restore = random_masking(jax.random.key(0), 2, 16)
      >>> keep.shape, int(mask.sum())
      ((2, 4), 24)
    """
    n = check_size(n, name="n")
    num_patches = check_size(num_patches, name="num_patches")
    ok = isinstance(mask_ratio, Real) and not isinstance(mask_ratio, bool)
    if not (ok and 0.0 <= mask_ratio < 1.0):
        raise ValueError(f"mask_ratio must be a number in [0, 1); got {mask_ratio!r}.")
    num_keep = int(num_patches * (1 - mask_ratio))
    if num_keep < 1:
        raise ValueError(
            f"mask_ratio={mask_ratio} keeps int({num_patches} * (1 - {mask_ratio})) = 0 of "
            f"{num_patches} patches; lower mask_ratio or use more patches."
        )
    noise = jax.vmap(lambda k: jax.random.uniform(k, (num_patches,)))(jax.random.split(key, n))
    shuffle = jnp.argsort(noise, axis=1).astype(jnp.int32)
    ids_restore = jnp.argsort(shuffle, axis=1).astype(jnp.int32)
    return PatchMasking(
        keep_indices=shuffle[:, :num_keep],
        mask=ids_restore >= num_keep,
        ids_restore=ids_restore,
    )


def normalized_patch_targets(patches: jax.typing.ArrayLike, *, eps: float = 1e-6) -> jax.Array:
    r"""Per-patch normalised pixels, MAE's ``norm_pix_loss`` targets.

    Each patch's ``D = p * p * C`` values are standardised by their own mean and variance:

    .. math::
        \hat x_{n,l,d} = \frac{x_{n,l,d} - \mu_{n,l}}{\sqrt{\sigma^2_{n,l} + \epsilon}}, \quad
        \mu_{n,l} = \frac{1}{D} \sum_d x_{n,l,d}, \quad
        \sigma^2_{n,l} = \frac{1}{D - 1} \sum_d (x_{n,l,d} - \mu_{n,l})^2

    The variance is the unbiased one (``D - 1`` in the denominator), as MAE's ``forward_loss``,
    whose ``target.var(dim=-1)`` is PyTorch's default ``unbiased=True``. MAE finds these targets
    improve fine-tuning accuracy (its Table 1d).

    Args:
      patches: ``(..., D)`` patch pixels, e.g. ``patchify(images, p)``; ``D >= 2``.
      eps: added to the variance, >= 0 (1e-6 in MAE); a positive one keeps flat patches finite.

    Returns:
      Array of the patches' shape, float32 (float64 for float64 input).

    Examples:
      >>> import jax.numpy as jnp
      >>> t = normalized_patch_targets(jnp.array([[1.0, 2.0, 3.0]]), eps=0.0)
      >>> t.tolist()
      [[-1.0, 0.0, 1.0]]
    """
    patches = jnp.asarray(patches)
    if patches.ndim < 1 or patches.shape[-1] < 2:
        raise ValueError(
            "patches must have at least 2 values per patch on the last axis, shape (..., D) "
            f"with D = p * p * C >= 2; got shape {patches.shape}."
        )
    if not isinstance(eps, Real) or not eps >= 0.0:
        raise ValueError(f"eps must be a number >= 0; got {eps!r}.")
    x = patches.astype(jnp.promote_types(patches.dtype, jnp.float32))
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.var(x, axis=-1, keepdims=True, ddof=1)
    return (x - mean) * jax.lax.rsqrt(var + eps)
