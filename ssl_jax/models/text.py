"""A text transformer encoder (BERT sizes) built from the ViT's blocks, and its MLM head.

:class:`TextEncoder` embeds int token ids (a learned token embedding plus a learned position
embedding, both normal with std 0.02 as BERT's ``initializer_range``), runs ``depth`` pre-norm
blocks (:class:`ssl_jax.models.vit.Block`, the ViT's: ``x + attn(norm1(x))``, ``x +
mlp(norm2(x))``, exact GELU) and a final LayerNorm. BERT itself is post-norm with a LayerNorm
on the embeddings; this is the pre-norm layout of the ViTs here (and of GPT-2), which needs no
embedding LayerNorm. Attention never crosses from one segment to another: the batch's
``segments`` (int ``(N, L)``, 0 on padding, :mod:`ssl_jax.data.tokens`) give an additive bias
of -1e9 between tokens of different segments and on padding keys; without ``segments``,
every token that is not ``[PAD]`` (id 0) is one segment.

Features (``feature_dim = embed_dim``): ``pool="cls"``, the final-normed first ([CLS]) token,
or ``pool="mean"``, the mean of the final-normed tokens over the real ones (segment > 0); the
export's spec states it (its ``model.pool``).

:class:`MLMHead` is BERT's ``cls/predictions``: dense, GELU, LayerNorm, then logits through
the token embedding's transpose (tied, passed in) plus a bias of its own.

Sizes (Turc et al. 2019, "Well-Read Students Learn Better", the BERT miniatures):
``bert_tiny`` 2 blocks of 128 (2 heads), ``bert_mini`` 4 of 256 (4), ``bert_small`` 4 of 512
(8), ``bert_base`` 12 of 768 (12; Devlin et al. 2019). Heads are width / 64 as there.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.models.vit import POOLS, Block, _layer_norm, _linear, dropout, trunc_normal
from ssl_jax.sharding import constrain_batch

PAD_ID = 0
NEG_INF = -1e9  # finite, so a padding query (every key masked) stays finite


def attention_bias(segments: jax.Array) -> jax.Array:
    """``(N, 1, L, L)`` float32: 0 where query and key share a segment > 0, else -1e9."""
    same = segments[:, :, None] == segments[:, None, :]
    allowed = same & (segments[:, None, :] > 0)
    return jnp.where(allowed, 0.0, NEG_INF)[:, None].astype(jnp.float32)


class TextEncoder(nnx.Module):
    """Token ids ``(N, L)`` -> features ``(N, embed_dim)`` (see the module docstring).

    ``L`` may be at most ``max_len`` (a longer batch raises ``ValueError`` at trace time).
    ``drop_rate`` is dropout after the embeddings and inside the blocks (BERT: 0.1) in train
    mode with a key passed as ``rngs``; 0 by default.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        max_len: int = 512,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        pool: str = "cls",
        drop_rate: float = 0.0,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if pool not in POOLS:
            raise ValueError(f"Unknown text pool {pool!r}; expected one of {list(POOLS)}.")
        for name, value in (("vocab_size", vocab_size), ("max_len", max_len), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name} must be a positive int, got {value!r}.")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must lie in [0, 1), got {drop_rate!r}.")
        self.vocab_size, self.max_len, self.pool = vocab_size, max_len, pool
        self.drop_rate = drop_rate
        self.deterministic = False
        self.dtype = dtype
        self.token_embed = nnx.Param(trunc_normal(rngs.params(), (vocab_size, embed_dim)))
        self.pos_embed = nnx.Param(trunc_normal(rngs.params(), (1, max_len, embed_dim)))
        self.blocks = nnx.List(
            [
                Block(
                    embed_dim,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    drop_rate=drop_rate,
                    dtype=dtype,
                    rngs=rngs,
                )
                for _ in range(depth)
            ]
        )
        self.norm = _layer_norm(embed_dim, dtype=dtype, rngs=rngs)
        self.feature_dim = embed_dim

    def __call__(
        self,
        tokens: jax.Array,
        *,
        segments: jax.Array | None = None,
        return_all: bool = False,
        rngs: jax.Array | None = None,
    ) -> jax.Array | dict[str, jax.Array]:
        """Pooled features ``(N, D)`` float32; with ``return_all`` a dict of ``"tokens"``
        ``(N, L, D)`` (the final-normed sequence, float32), ``"block1"`` ... and
        ``"pooled"``. ``segments``: int ``(N, L)``, 0 on padding (default: ``tokens !=
        [PAD]``). ``rngs``: the dropout key, needed in train mode when ``drop_rate > 0``."""
        tokens = jnp.asarray(tokens)
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"tokens must be int ids (N, L), got {tokens.dtype} {tokens.shape}.")
        n, length = tokens.shape
        if length > self.max_len:
            raise ValueError(
                f"sequences of {length} tokens are longer than the model's max_len="
                f"{self.max_len}; set data.seq_len <= {self.max_len} or model.max_len >= "
                f"{length}."
            )
        if segments is None:
            segments = (tokens != PAD_ID).astype(jnp.int32)
        bias = attention_bias(jnp.asarray(segments))
        x = jnp.take(self.token_embed[...], tokens, axis=0) + self.pos_embed[:, :length]
        x = constrain_batch(x.astype(self.dtype))
        key = None
        if not self.deterministic and self.drop_rate > 0.0:
            if rngs is None:
                raise ValueError(
                    f"TextEncoder has drop_rate={self.drop_rate} and is in train mode, so it "
                    "needs rngs=jax.random.key(...), or .eval() (train=False)."
                )
            key, embed_key = jax.random.split(rngs)
            x = dropout(x, self.drop_rate, embed_key)
        keys = [None] * len(self.blocks) if key is None else jax.random.split(key, len(self.blocks))
        outputs = {}
        for i, (block, block_key) in enumerate(zip(self.blocks, keys, strict=True)):
            x = block(x, key=block_key, bias=bias.astype(x.dtype))
            outputs[f"block{i + 1}"] = x
        normed = self.norm(x).astype(jnp.float32)
        if self.pool == "cls":
            pooled = normed[:, 0]
        else:
            real = (jnp.asarray(segments) > 0).astype(jnp.float32)[..., None]
            pooled = jnp.sum(normed * real, axis=1) / jnp.maximum(jnp.sum(real, axis=1), 1.0)
        if not return_all:
            return pooled
        outputs = {name: y.astype(jnp.float32) for name, y in outputs.items()}
        return {"tokens": normed, **outputs, "pooled": pooled}


class MLMHead(nnx.Module):
    """BERT's masked-LM head: ``LayerNorm(gelu(dense(h))) @ embedding.T + bias``, the output
    projection tied to the encoder's token embedding ``(V, D)``, passed to the call."""

    def __init__(self, embed_dim: int, vocab_size: int, *, rngs: nnx.Rngs):
        self.dense = _linear(embed_dim, embed_dim, dtype=jnp.float32, rngs=rngs)
        self.norm = _layer_norm(embed_dim, dtype=jnp.float32, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros((vocab_size,)))

    def __call__(self, h: jax.Array, embedding: jax.Array) -> jax.Array:
        h = self.norm(nnx.gelu(self.dense(h.astype(jnp.float32)), approximate=False))
        return h @ embedding.astype(jnp.float32).T + self.bias[...]


class RTDHead(nnx.Module):
    """ELECTRA's discriminator head: ``dense_1(gelu(dense(h)))``, one logit per token
    (positive: replaced)."""

    def __init__(self, embed_dim: int, *, rngs: nnx.Rngs):
        self.dense = _linear(embed_dim, embed_dim, dtype=jnp.float32, rngs=rngs)
        self.out = _linear(embed_dim, 1, dtype=jnp.float32, rngs=rngs)

    def __call__(self, h: jax.Array) -> jax.Array:
        h = nnx.gelu(self.dense(h.astype(jnp.float32)), approximate=False)
        return self.out(h)[..., 0]


def _bert(defaults: dict[str, Any], rngs: nnx.Rngs, kwargs: dict[str, Any]) -> TextEncoder:
    return TextEncoder(**{**defaults, **kwargs}, rngs=rngs)


def bert_tiny(*, rngs: nnx.Rngs, **kwargs: Any) -> TextEncoder:
    """BERT-Tiny: 2 blocks of width 128, 2 heads; kwargs (``vocab_size`` required) override."""
    return _bert({"embed_dim": 128, "depth": 2, "num_heads": 2}, rngs, kwargs)


def bert_mini(*, rngs: nnx.Rngs, **kwargs: Any) -> TextEncoder:
    """BERT-Mini: 4 blocks of width 256, 4 heads; kwargs override."""
    return _bert({"embed_dim": 256, "depth": 4, "num_heads": 4}, rngs, kwargs)


def bert_small(*, rngs: nnx.Rngs, **kwargs: Any) -> TextEncoder:
    """BERT-Small: 4 blocks of width 512, 8 heads; kwargs override."""
    return _bert({"embed_dim": 512, "depth": 4, "num_heads": 8}, rngs, kwargs)


def bert_base(*, rngs: nnx.Rngs, **kwargs: Any) -> TextEncoder:
    """BERT-Base: 12 blocks of width 768, 12 heads; kwargs override."""
    return _bert({"embed_dim": 768, "depth": 12, "num_heads": 12}, rngs, kwargs)


TEXT_ENCODERS: dict[str, Callable[..., nnx.Module]] = {
    "bert_tiny": bert_tiny,
    "bert_mini": bert_mini,
    "bert_small": bert_small,
    "bert_base": bert_base,
}

__all__ = [
    "TEXT_ENCODERS",
    "MLMHead",
    "RTDHead",
    "TextEncoder",
    "attention_bias",
    "bert_base",
    "bert_mini",
    "bert_small",
    "bert_tiny",
]
