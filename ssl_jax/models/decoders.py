"""Decoders for pretext tasks: MAE's light transformer decoder and a small upsampling conv decoder.

Both are plain NNX modules holding only parameters and batch statistics, so they go through
:func:`ssl_jax.models.module_def` like a backbone or a head:

- :class:`MAEDecoder` (He et al., 2022): the encoder's visible tokens plus mask tokens, un-shuffled
  to patch order, fixed 2-D sine-cosine position embeddings, a few transformer blocks, a Linear to
  the pixels of each patch. ``module_def(...).apply(params, stats, tokens, train=...,
  ids_restore=ids_restore)``.
- :class:`ConvDecoder`: upsampling stages (2x nearest resize, 3x3 conv, BatchNorm, ReLU) and a 1x1
  conv, for dense targets: colour bins (Zhang et al., 2016) or the pixels of a hole (Pathak et
  al., 2016). ``module_def(...).apply(params, stats, feature_map, train=...)``.

References:
  He, Chen, Xie, Li, Dollár, Girshick, "Masked Autoencoders Are Scalable Vision Learners", CVPR
  2022, https://arxiv.org/abs/2111.06377 (code: facebookresearch/mae, ``models_mae.py``,
  ``util/pos_embed.py``).
  Zhang, Isola, Efros, "Colorful Image Colorization", ECCV 2016.
  Pathak, Krähenbühl, Donahue, Darrell, Efros, "Context Encoders: Feature Learning by
  Inpainting", CVPR 2016.
  Odena, Dumoulin, Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ssl_jax.models.resnet import _bn, _conv
from ssl_jax.models.vit import Block, _layer_norm
from ssl_jax.sharding import constrain_batch

__all__ = ["ConvDecoder", "MAEDecoder", "sincos_pos_embed_2d"]

_xavier_uniform = nnx.initializers.xavier_uniform()
_mask_token_init = nnx.initializers.normal(0.02)


def sincos_pos_embed_2d(
    dim: int, grid_size: tuple[int, int], *, cls_token: bool = True
) -> jax.Array:
    r"""Fixed 2-D sine-cosine position embeddings, MAE's ``get_2d_sincos_pos_embed``.

    For the patch at grid row ``r``, column ``c`` (row-major index ``j = r * cols + c``, the
    ViT's token order) and ``k = 0 … D/4 - 1``, with :math:`\omega_k = 10000^{-k / (D/4)}`:

    .. math::
        e_j = [\sin(c\,\omega), \cos(c\,\omega), \sin(r\,\omega), \cos(r\,\omega)]

    i.e. the first ``D/2`` dimensions encode the column and the last ``D/2`` the row, each half
    split into ``D/4`` sines then ``D/4`` cosines. This is the layout MAE's code produces: its
    ``np.meshgrid(grid_w, grid_h)`` puts the column coordinate first, into the half its code calls
    ``emb_h``. MAE's grids are square; here ``grid_size = (rows, cols)`` may be rectangular. The
    values are computed in float64 (as MAE's NumPy code) and returned in float32.

    Args:
      dim: embedding width ``D``, a multiple of 4.
      grid_size: ``(rows, cols)`` of the patch grid.
      cls_token: prepend a row of zeros for the [CLS] token (MAE's ``cls_token=True``).

    Returns:
      float32 ``(1 + rows * cols, D)`` with ``cls_token``, else ``(rows * cols, D)``.

    Examples:
      >>> sincos_pos_embed_2d(8, (2, 3)).shape
      (7, 8)
    """
    if dim < 4 or dim % 4:
        raise ValueError(
            f"2-D sine-cosine position embeddings need a width divisible by 4 (sin and cos for "
            f"rows and columns); got {dim}. Choose decoder_dim as a multiple of 4."
        )
    rows, cols = _check_grid(grid_size)
    omega = 1.0 / 10000.0 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))
    row, col = np.divmod(np.arange(rows * cols, dtype=np.float64), cols)
    col_angle, row_angle = col[:, None] * omega, row[:, None] * omega
    emb = np.concatenate(
        [np.sin(col_angle), np.cos(col_angle), np.sin(row_angle), np.cos(row_angle)], axis=1
    )
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    return jnp.asarray(emb, dtype=jnp.float32)


def _check_grid(grid_size: tuple[int, int]) -> tuple[int, int]:
    grid = tuple(grid_size)
    if len(grid) != 2 or not all(isinstance(g, int | np.integer) and g >= 1 for g in grid):
        raise ValueError(
            f"grid_size must be (rows, cols), two positive ints; got {grid_size!r}. For a "
            "224px image with 16px patches pass (14, 14)."
        )
    return int(grid[0]), int(grid[1])


def _xavier_linear(
    in_features: int, out_features: int, *, dtype: Any, rngs: nnx.Rngs
) -> nnx.Linear:
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=_xavier_uniform,
        bias_init=nnx.initializers.zeros,
        dtype=dtype,
        rngs=rngs,
    )


class MAEDecoder(nnx.Module):
    """MAE's decoder: encoder tokens ``(N, 1 + K, encoder_dim)`` → patches ``(N, L, patch_dim)``.

    He et al. (2022), ``models_mae.py``'s ``forward_decoder``: the ``1 + K`` encoder tokens
    ([CLS] first, then the ``K`` visible patches in ``keep_indices`` order, as
    :func:`ssl_jax.pretext.patches.random_masking` and the ViT's ``keep_indices`` produce them)
    are embedded linearly to ``decoder_dim`` (``decoder_embed``); ``L - K`` copies of a learned
    ``mask_token`` are appended after the visible ones; ``ids_restore`` un-shuffles the ``L``
    patch tokens into patch order (``take_along_axis``: position ``j`` gets entry
    ``ids_restore[:, j]``); [CLS] goes back in front; fixed 2-D sine-cosine position embeddings
    (:func:`sincos_pos_embed_2d`, zero for [CLS]) are added; ``depth`` pre-norm transformer
    blocks (the ViT's :class:`~ssl_jax.models.vit.Block`), a LayerNorm (``norm``, epsilon 1e-6)
    and a Linear to ``patch_dim`` (``pred``) follow; the [CLS] output is dropped. Output
    ``[:, j]`` predicts patch ``j`` in :func:`~ssl_jax.pretext.patches.patchify`'s layout, and is
    float32 whatever ``dtype`` (the computation dtype; parameters are float32).

    MAE's defaults are ``decoder_dim=512, depth=8, num_heads=16`` with ``patch_dim = p * p * 3``.
    ``depth=0`` is allowed (no blocks; each output then depends on its own token only).

    Initialisation as MAE's ``initialize_weights``: every Linear weight, including those of the
    blocks (the fused ``qkv`` as one ``(D, 3D)`` matrix, as timm's), is Xavier-uniform with zero
    bias: the blocks are built with the ViT's std-0.02 normal and their kernels redrawn here.
    LayerNorms start at scale one, bias zero; the mask token is normal with std 0.02. The
    position embeddings are fixed, not parameters (MAE's ``requires_grad=False``): they are
    recomputed from ``grid_size`` at trace time, a constant of the compiled program. There is no
    dropout or drop path (MAE's decoder has none) and no BatchNorm: ``batch_stats`` is empty.
    """

    def __init__(
        self,
        *,
        num_patches: int,
        encoder_dim: int,
        decoder_dim: int = 512,
        depth: int = 8,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        patch_dim: int,
        grid_size: tuple[int, int],
        dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        rows, cols = _check_grid(grid_size)
        if num_patches != rows * cols:
            raise ValueError(
                f"num_patches={num_patches} does not match grid_size={grid_size!r} "
                f"({rows} * {cols} = {rows * cols} patches); pass both for the same patch grid."
            )
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be an int >= 0; got {depth!r}.")
        if decoder_dim < 4 or decoder_dim % 4:
            raise ValueError(
                f"decoder_dim must be a positive multiple of 4 for the 2-D sine-cosine position "
                f"embeddings; got {decoder_dim}."
            )
        self.num_patches = num_patches
        self.grid_size = (rows, cols)
        self.encoder_dim = encoder_dim
        self.decoder_dim = decoder_dim
        self.decoder_embed = _xavier_linear(encoder_dim, decoder_dim, dtype=dtype, rngs=rngs)
        self.mask_token = nnx.Param(_mask_token_init(rngs.params(), (1, 1, decoder_dim)))
        blocks = []
        for _ in range(depth):
            block = Block(decoder_dim, num_heads, mlp_ratio=mlp_ratio, dtype=dtype, rngs=rngs)
            for linear in (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2):
                linear.kernel[...] = _xavier_uniform(rngs.params(), linear.kernel.shape)
            blocks.append(block)
        self.blocks = nnx.List(blocks)
        self.norm = _layer_norm(decoder_dim, dtype=dtype, rngs=rngs)
        self.pred = _xavier_linear(decoder_dim, patch_dim, dtype=dtype, rngs=rngs)

    def __call__(self, tokens: jax.Array, ids_restore: jax.typing.ArrayLike) -> jax.Array:
        """Patch predictions ``(N, L, patch_dim)`` in patch order.

        Args:
          tokens: ``(N, 1 + K, encoder_dim)`` encoder output, [CLS] first, then the ``K``
            visible patches in ``keep_indices`` order (the ViT's ``return_all=True`` output
            ``"tokens"``); ``0 <= K <= L``.
          ids_restore: int ``(N, L)``, the inverse of the masking shuffle
            (:class:`~ssl_jax.pretext.patches.PatchMasking`'s ``ids_restore``): patch ``j``
            is token ``ids_restore[:, j]`` of the visible-then-mask sequence. Values are not
            checked (they may be traced).

        Returns:
          float32 ``(N, L, patch_dim)``; masked positions hold the prediction from a mask token.
        """
        tokens = jnp.asarray(tokens)
        ids_restore = jnp.asarray(ids_restore)
        num_patches = self.num_patches
        if tokens.ndim != 3 or tokens.shape[-1] != self.encoder_dim:
            raise ValueError(
                f"tokens must have shape (N, 1 + K, encoder_dim={self.encoder_dim}), [CLS] "
                f"first; got {tokens.shape}."
            )
        n, num_tokens, _ = tokens.shape
        if not 1 <= num_tokens <= 1 + num_patches:
            raise ValueError(
                f"tokens hold {num_tokens} tokens, expected [CLS] plus K <= {num_patches} "
                f"visible patches (1 to {1 + num_patches} tokens); got shape {tokens.shape}."
            )
        if ids_restore.shape != (n, num_patches):
            raise ValueError(
                f"ids_restore must have shape (N, L) = ({n}, {num_patches}), one un-shuffle "
                f"per image over all patches; got {ids_restore.shape}."
            )
        if not jnp.issubdtype(ids_restore.dtype, jnp.integer):
            raise ValueError(
                f"ids_restore must hold integer indices in 0..{num_patches - 1}; got dtype "
                f"{ids_restore.dtype}."
            )
        x = constrain_batch(self.decoder_embed(constrain_batch(tokens)))
        mask_tokens = jnp.broadcast_to(
            self.mask_token[...].astype(x.dtype), (n, num_patches + 1 - num_tokens, x.shape[-1])
        )
        patches = jnp.concatenate([x[:, 1:], mask_tokens], axis=1)
        patches = jnp.take_along_axis(patches, ids_restore[:, :, None], axis=1)
        x = constrain_batch(jnp.concatenate([x[:, :1], patches], axis=1))
        x = x + sincos_pos_embed_2d(self.decoder_dim, self.grid_size)[None].astype(x.dtype)
        for block in self.blocks:
            x = block(x)
        x = constrain_batch(self.pred(self.norm(x)))
        return x[:, 1:].astype(jnp.float32)


class ConvDecoder(nnx.Module):
    """Upsampling decoder ``(N, H, W, in_channels)`` → ``(N, H 2^u, W 2^u, out_channels)``.

    ``u = num_upsamples`` stages, each a 2x nearest-neighbour resize (``jax.image.resize``,
    ``method="nearest"``: every pixel copied into a 2x2 block) then a 3x3 convolution to
    ``width`` channels, BatchNorm and ReLU; then a 1x1 convolution to ``out_channels`` with a
    bias and no activation (logits or pixel values). Output is float32 whatever ``dtype`` (the
    computation dtype; parameters are float32).

    Uses: colorization (Zhang et al., 2016) predicts ``out_channels=313`` ab-bin logits per pixel
    at 1/4 of the input resolution, e.g. from a stride-16 feature map with ``num_upsamples=2``;
    inpainting (Pathak et al., 2016) decodes the RGB (``out_channels=3``) of the missing region.
    Both papers upsample with transposed convolutions; resize-then-convolve is used here instead
    (Odena et al., 2016: the same capacity without checkerboard artifacts).

    Conventions as :mod:`ssl_jax.models.resnet`: convolutions before BatchNorm have no bias,
    He-normal fan-out kernels and symmetric padding; BatchNorm has momentum 0.9, epsilon 1e-5.
    The final 1x1 convolution has Flax's default LeCun-normal kernel and a zero bias. As for the
    ResNet, ``.train()`` / ``.eval()`` (or ``apply_module(..., train=...)``) choose batch or
    running BatchNorm statistics: ``__call__`` takes no mode argument.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        width: int = 64,
        num_upsamples: int,
        dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        if isinstance(num_upsamples, bool) or not isinstance(num_upsamples, int):
            raise ValueError(f"num_upsamples must be an int >= 0; got {num_upsamples!r}.")
        if num_upsamples < 0:
            raise ValueError(f"num_upsamples must be an int >= 0; got {num_upsamples!r}.")
        if width < 1:
            raise ValueError(f"width must be a positive int; got {width!r}.")
        self.in_channels = in_channels
        self.num_upsamples = num_upsamples
        channels = [in_channels] + [width] * num_upsamples
        self.convs = nnx.List(
            _conv(c_in, width, 3, dtype=dtype, rngs=rngs) for c_in in channels[:-1]
        )
        self.norms = nnx.List(_bn(width, dtype=dtype, rngs=rngs) for _ in range(num_upsamples))
        self.out = nnx.Conv(
            channels[-1],
            out_channels,
            (1, 1),
            bias_init=nnx.initializers.zeros,
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Dense output ``(N, H * 2**num_upsamples, W * 2**num_upsamples, out_channels)``.

        Args:
          x: ``(N, H, W, in_channels)`` feature map (e.g. a ResNet stage from
            ``return_all=True``).
        """
        x = jnp.asarray(x)
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"ConvDecoder expects an NHWC feature map (N, H, W, {self.in_channels}); got "
                f"shape {x.shape}."
            )
        for conv, norm in zip(self.convs, self.norms, strict=True):
            n, h, w, c = x.shape
            x = jax.image.resize(x, (n, 2 * h, 2 * w, c), method="nearest")
            x = nnx.relu(norm(conv(x)))
        return self.out(x).astype(jnp.float32)


class Data2VecDecoder(nnx.Module):
    """data2vec 2.0's light convolutional decoder: ``(N, 1 + K, D)`` encoder tokens of the
    visible patches -> ``(N, L, out_dim)`` predictions for every patch position.

    The visible patch tokens are put back at their positions (``ids_restore`` of
    :func:`~ssl_jax.pretext.random_masking`), the masked positions get a learned mask
    embedding; a linear map to ``decoder_dim``, then ``depth`` residual blocks of a grouped 3x3
    convolution over the ``grid_size`` patch grid, LayerNorm and GELU (Baevski et al. 2023,
    section 3: "a light weight decoder consisting of D convolutions, each followed by layer
    normalization and a GELU"), then a linear map to the target width ``out_dim``.
    """

    def __init__(
        self,
        *,
        num_patches: int,
        encoder_dim: int,
        decoder_dim: int,
        out_dim: int,
        depth: int,
        grid_size: tuple[int, int],
        groups: int = 16,
        rngs: nnx.Rngs,
    ):
        self.grid_size = _check_grid(grid_size)
        if self.grid_size[0] * self.grid_size[1] != num_patches:
            raise ValueError(f"grid_size {grid_size} does not hold num_patches={num_patches}.")
        if decoder_dim % groups:
            raise ValueError(
                f"Data2VecDecoder: decoder_dim={decoder_dim} must be a multiple of groups={groups}."
            )
        self.num_patches = num_patches
        self.mask_embed = nnx.Param(jnp.zeros((1, 1, encoder_dim)))
        self.embed = nnx.Linear(encoder_dim, decoder_dim, rngs=rngs)
        self.convs = nnx.List(
            nnx.Conv(
                decoder_dim,
                decoder_dim,
                (3, 3),
                padding="SAME",
                feature_group_count=groups,
                rngs=rngs,
            )
            for _ in range(depth)
        )
        self.norms = nnx.List(
            nnx.LayerNorm(decoder_dim, use_scale=False, use_bias=False, rngs=rngs)
            for _ in range(depth)
        )
        self.head = nnx.Linear(decoder_dim, out_dim, rngs=rngs)

    def __call__(self, tokens: jax.Array, *, ids_restore: jax.typing.ArrayLike) -> jax.Array:
        n, k1, d = tokens.shape
        visible = tokens[:, 1:]
        fill = jnp.broadcast_to(self.mask_embed[...], (n, self.num_patches - (k1 - 1), d))
        x = jnp.concatenate([visible, fill.astype(visible.dtype)], axis=1)
        x = jnp.take_along_axis(x, jnp.asarray(ids_restore)[:, :, None], axis=1)
        x = self.embed(x).reshape(n, *self.grid_size, -1)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = x + jax.nn.gelu(norm(conv(x)), approximate=False)
        return self.head(x.reshape(n, self.num_patches, -1))
