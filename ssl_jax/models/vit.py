"""Vision Transformer backbones in Flax NNX, returning pooled features (no classifier).

The layout follows timm's ``VisionTransformer`` as used by DINO (Caron et al., 2021) and MoCo v3
(Chen et al., 2021): a ``patch``×``patch`` stride-``patch`` convolution embeds non-overlapping
patches, a learnable [CLS] token is prepended, learnable position embeddings are added, then
``depth`` pre-norm blocks ``x + attn(norm1(x))``, ``x + mlp(norm2(x))`` (fused ``qkv`` Linear,
exact-erf GELU MLP) and a final LayerNorm (epsilon 1e-6). Without their classifier head the
parameter counts equal timm's ``vit_{tiny,small,base}_patch16_224``: 5,524,416, 21,665,664,
85,798,656. Module names (``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks[i].attn.qkv``,
``mlp.fc1``, ``norm``) mirror timm's, so ported weights only need transposing.

Initialisation as DINO's ``VisionTransformer``: Linear weights, [CLS] token and position
embeddings are normal with std 0.02 (timm's ``trunc_normal_(std=0.02)`` cuts at ±2 in absolute
value, i.e. ±100 std: untruncated in practice), Linear biases zero, LayerNorm scale one and bias
zero. The patch convolution keeps PyTorch's default weight initialisation (uniform with variance
``1 / (3 fan_in)``) with a zero bias.

Other input sizes than ``img_size`` (DINO's 96px local crops, or evaluation at another
resolution) are handled as DINO's ``interpolate_pos_encoding``: the patch position embeddings are
resized bicubically to the input's patch grid, the [CLS] one is kept. The CIFAR variant is
``patch_size=4, img_size=32`` (an 8×8 grid of 64 patches). No dropout or stochastic depth: the
modules hold no RNG state, as ``split_module`` requires.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

LN_EPSILON = 1e-6
POOLS = ("cls", "mean")

# timm's trunc_normal_(std=0.02) truncates at ±2 absolute, which is ±100 standard deviations.
trunc_normal = nnx.initializers.truncated_normal(0.02, lower=-100.0, upper=100.0)
# PyTorch's default Conv2d weight initialisation, kaiming_uniform_(a=sqrt(5)).
torch_conv_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _linear(
    in_features: int, out_features: int, *, use_bias: bool = True, dtype: Any, rngs: nnx.Rngs
) -> nnx.Linear:
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=trunc_normal,
        bias_init=nnx.initializers.zeros,
        dtype=dtype,
        rngs=rngs,
    )


def _layer_norm(num_features: int, *, dtype: Any, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(num_features, epsilon=LN_EPSILON, dtype=dtype, rngs=rngs)


def interpolate_pos_embed(pos_embed: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """Resizes ``(1, 1 + h * w, D)`` position embeddings of an ``h``×``w`` grid to ``grid``.

    The first ([CLS]) embedding is kept; the ``h * w`` patch embeddings, laid out row-major, are
    resized bicubically (``jax.image.resize``, half-pixel centres, no antialiasing) to
    ``grid = (rows, cols)``. The source grid must be square (``h = w``), as in DINO. Returned
    unchanged when ``grid`` already is the source grid. jax's cubic kernel is Keys' with
    ``a = -0.5`` where PyTorch's ``bicubic`` uses ``a = -0.75``, so values differ slightly from
    DINO's for the same weights.
    """
    _, num_tokens, dim = pos_embed.shape
    side = round((num_tokens - 1) ** 0.5)
    if side * side != num_tokens - 1:
        raise ValueError(
            f"pos_embed has {num_tokens - 1} patch positions, not a square grid; expected "
            "shape (1, 1 + h * h, D)."
        )
    if tuple(grid) == (side, side):
        return pos_embed
    patch_pos = pos_embed[:, 1:].reshape(1, side, side, dim)
    patch_pos = jax.image.resize(
        patch_pos, (1, *grid, dim), method="bicubic", antialias=False
    ).reshape(1, grid[0] * grid[1], dim)
    return jnp.concatenate([pos_embed[:, :1], patch_pos], axis=1)


class Attention(nnx.Module):
    """Multi-head self-attention with a fused ``qkv`` projection: ``(N, T, D)`` → ``(N, T, D)``.

    ``qkv`` maps to ``3 * D`` features laid out ``(3, num_heads, D // num_heads)`` as timm's, then
    ``softmax(q kᵀ / sqrt(D // num_heads)) v`` per head (``jax.nn.dot_product_attention``,
    softmax in float32) and the output projection ``proj``.
    """

    def __init__(
        self, dim: int, num_heads: int, *, qkv_bias: bool = True, dtype: Any, rngs: nnx.Rngs
    ):
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.qkv = _linear(dim, 3 * dim, use_bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.proj = _linear(dim, dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads)
        y = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
        return self.proj(y.reshape(n, t, d))


class Mlp(nnx.Module):
    """``fc2(gelu(fc1(x)))`` with the exact (erf) GELU, as PyTorch's ``nn.GELU()``."""

    def __init__(self, dim: int, hidden_dim: int, *, dtype: Any, rngs: nnx.Rngs):
        self.fc1 = _linear(dim, hidden_dim, dtype=dtype, rngs=rngs)
        self.fc2 = _linear(hidden_dim, dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(nnx.gelu(self.fc1(x), approximate=False))


class Block(nnx.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.norm1 = _layer_norm(dim, dtype=dtype, rngs=rngs)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.norm2 = _layer_norm(dim, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nnx.Module):
    """ViT feature extractor: ``(N, H, W, in_channels)`` → ``(N, embed_dim)``.

    ``H`` and ``W`` must be multiples of ``patch_size``; position embeddings are interpolated when
    they differ from ``img_size`` (see ``interpolate_pos_embed``). ``pool="cls"`` (DINO, MoCo v3)
    returns the final-normed [CLS] token; ``pool="mean"`` the final LayerNorm of the mean of the
    patch tokens (timm's ``global_pool="avg"``, MAE). ``feature_dim = embed_dim``. Features are
    float32 whatever ``dtype`` (the computation dtype; parameters are always float32).

    Blocks live in ``self.blocks[i]``. There is no BatchNorm, so ``batch_stats`` is empty and
    train and eval mode compute the same function.
    """

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        pool: str = "cls",
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if pool not in POOLS:
            raise ValueError(f"Unknown ViT pool {pool!r}; expected one of {list(POOLS)}.")
        if patch_size < 1 or img_size % patch_size:
            raise ValueError(
                f"img_size {img_size} is not a multiple of patch_size {patch_size}; choose e.g. "
                "img_size=224 with patch_size=16, or img_size=32 with patch_size=4."
            )
        if depth < 1:
            raise ValueError(f"depth must be a positive int, got {depth!r}.")
        self.patch_size = patch_size
        self.grid_size = (img_size // patch_size,) * 2
        self.pool = pool
        self.patch_embed = nnx.Conv(
            in_channels,
            embed_dim,
            (patch_size, patch_size),
            strides=(patch_size, patch_size),
            padding="VALID",
            kernel_init=torch_conv_init,
            bias_init=nnx.initializers.zeros,
            dtype=dtype,
            rngs=rngs,
        )
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.cls_token = nnx.Param(trunc_normal(rngs.params(), (1, 1, embed_dim)))
        self.pos_embed = nnx.Param(trunc_normal(rngs.params(), (1, 1 + num_patches, embed_dim)))
        self.blocks = nnx.List(
            [
                Block(
                    embed_dim,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    dtype=dtype,
                    rngs=rngs,
                )
                for _ in range(depth)
            ]
        )
        self.norm = _layer_norm(embed_dim, dtype=dtype, rngs=rngs)
        self.feature_dim = embed_dim

    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, _ = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f"Input of {h}x{w} pixels is not a multiple of patch_size {p}; resize or crop "
                f"the images to a multiple of {p}."
            )
        x = self.patch_embed(x).reshape(n, (h // p) * (w // p), -1)
        dtype = x.dtype
        cls = jnp.broadcast_to(self.cls_token[...], (n, 1, x.shape[-1])).astype(dtype)
        pos = interpolate_pos_embed(self.pos_embed[...], (h // p, w // p)).astype(dtype)
        x = jnp.concatenate([cls, x], axis=1) + pos
        for block in self.blocks:
            x = block(x)
        x = x[:, 0] if self.pool == "cls" else jnp.mean(x[:, 1:], axis=1)
        return self.norm(x).astype(jnp.float32)


def _vit(defaults: dict[str, Any], rngs: nnx.Rngs, kwargs: dict[str, Any]) -> VisionTransformer:
    return VisionTransformer(**{**defaults, **kwargs}, rngs=rngs)


def vit_tiny(*, rngs: nnx.Rngs, **kwargs: Any) -> VisionTransformer:
    """ViT-Ti (DeiT-Ti): width 192, 12 blocks, 3 heads; kwargs (even ``depth``) override.

    As for every factory, ``patch_size=4, img_size=32`` gives the CIFAR variant.
    """
    return _vit({"embed_dim": 192, "depth": 12, "num_heads": 3}, rngs, kwargs)


def vit_small(*, rngs: nnx.Rngs, **kwargs: Any) -> VisionTransformer:
    """ViT-S: width 384, 12 blocks, 6 heads (DINO's and MoCo v3's ViT-S/16); kwargs override."""
    return _vit({"embed_dim": 384, "depth": 12, "num_heads": 6}, rngs, kwargs)


def vit_base(*, rngs: nnx.Rngs, **kwargs: Any) -> VisionTransformer:
    """ViT-B: width 768, 12 blocks, 12 heads (DINO's and MoCo v3's ViT-B/16); kwargs override."""
    return _vit({"embed_dim": 768, "depth": 12, "num_heads": 12}, rngs, kwargs)


VITS: dict[str, Callable[..., nnx.Module]] = {
    "vit_tiny": vit_tiny,
    "vit_small": vit_small,
    "vit_base": vit_base,
}


__all__ = [
    "VITS",
    "Attention",
    "Block",
    "Mlp",
    "VisionTransformer",
    "interpolate_pos_embed",
    "vit_base",
    "vit_small",
    "vit_tiny",
]
