"""I-JEPA's predictor (Assran et al., 2023): a narrow ViT that predicts the target encoder's
features of target patches from the context encoder's tokens.

The authors' ``VisionTransformerPredictor`` (``src/models/vision_transformer.py``): the context
tokens are mapped to the predictor's width (``predictor_embed``) and get the fixed 2-D
sine-cosine position embedding of their patch; for each target block, one shared learnable
``mask_token`` plus the position embedding of each target patch is appended; ``depth``
pre-norm blocks (the ViT's :class:`~ssl_jax.models.vit.Block`), a LayerNorm (epsilon 1e-6) and
a linear map back to the encoder's width (``predictor_proj``) follow, and the outputs at the
mask tokens are the predictions. Each target block is predicted in a pass of its own (the
context repeated per block, as the authors' ``x.repeat(len(masks), 1, 1)``), so the mask
tokens of one block never see another's.

Initialisation as the authors': Linear weights and the mask token normal with std 0.02 (their
``trunc_normal_`` cuts at ±2 in absolute value, as the ViT's ``trunc_normal``), biases zero,
LayerNorm one and zero, and the output
projections of block ``i`` (``attn.proj``, ``mlp.fc2``, from 1) divided by ``sqrt(2 i)``
(their ``fix_init_weight``).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.models.decoders import sincos_pos_embed_2d
from ssl_jax.models.vit import LN_EPSILON, Block, trunc_normal


def _linear(in_features: int, out_features: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=trunc_normal,
        bias_init=nnx.initializers.zeros,
        rngs=rngs,
    )


class JEPAPredictor(nnx.Module):
    """``(context (N, Kc, D), context_indices (N, Kc), target_indices (N, M, K))`` →
    predictions ``(N, M, K, D)``, float32.

    ``grid_size = (rows, cols)`` is the encoder's patch grid (indices are row-major positions
    on it); ``encoder_dim = D``; ``predictor_dim`` the predictor's width (a multiple of 4, for
    the sine-cosine embeddings), ``depth`` blocks of ``num_heads`` heads. The authors' ViT-H/14
    recipe: width 384, depth 12, the encoder's 16 heads.
    """

    def __init__(
        self,
        *,
        grid_size: tuple[int, int],
        encoder_dim: int,
        predictor_dim: int = 384,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        rngs: nnx.Rngs,
    ):
        if depth < 1:
            raise ValueError(f"predictor depth must be a positive int, got {depth!r}.")
        if predictor_dim < 4 or predictor_dim % 4:
            raise ValueError(
                f"predictor_dim must be a positive multiple of 4 (2-D sine-cosine position "
                f"embeddings), got {predictor_dim}."
            )
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
        self.predictor_dim = predictor_dim
        self.predictor_embed = _linear(encoder_dim, predictor_dim, rngs)
        self.mask_token = nnx.Param(trunc_normal(rngs.params(), (1, 1, predictor_dim)))
        self.blocks = nnx.List(
            [
                Block(predictor_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, rngs=rngs)
                for _ in range(depth)
            ]
        )
        for i, block in enumerate(self.blocks):
            scale = 1.0 / math.sqrt(2.0 * (i + 1))
            block.attn.proj.kernel[...] = block.attn.proj.kernel[...] * scale
            block.mlp.fc2.kernel[...] = block.mlp.fc2.kernel[...] * scale
        self.norm = nnx.LayerNorm(predictor_dim, epsilon=LN_EPSILON, rngs=rngs)
        self.predictor_proj = _linear(predictor_dim, encoder_dim, rngs)

    def __call__(
        self,
        context: jax.Array,
        *,
        context_indices: jax.typing.ArrayLike,
        target_indices: jax.typing.ArrayLike,
    ) -> jax.Array:
        context_indices = jnp.asarray(context_indices)
        target_indices = jnp.asarray(target_indices)
        n, kc, _ = context.shape
        if context_indices.shape != (n, kc) or target_indices.ndim != 3:
            raise ValueError(
                f"JEPAPredictor needs context_indices of shape (N, Kc) = {(n, kc)} and "
                f"target_indices of shape (N, M, K); got {context_indices.shape} and "
                f"{target_indices.shape}."
            )
        _, m, k = target_indices.shape
        pos = sincos_pos_embed_2d(self.predictor_dim, self.grid_size, cls_token=False)
        x = self.predictor_embed(context) + pos[context_indices]
        x = jnp.broadcast_to(x[:, None], (n, m, kc, self.predictor_dim)).reshape(n * m, kc, -1)
        tokens = self.mask_token[...] + pos[target_indices.reshape(n * m, k)]
        x = jnp.concatenate([x, tokens], axis=1)
        for block in self.blocks:
            x = block(x)
        x = self.predictor_proj(self.norm(x[:, kc:]))
        return x.reshape(n, m, k, -1).astype(jnp.float32)


__all__ = ["JEPAPredictor"]
