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
``patch_size=4, img_size=32`` (an 8×8 grid of 64 patches).

``keep_indices`` runs the encoder on a subset of the patches, as MAE's (He et al., 2022) random
masking. Dropout (``drop_rate``) and stochastic depth (``drop_path_rate``, Huang et al., 2016)
follow timm as used by DeiT and MAE fine-tuning. They need randomness, but the modules hold no
RNG state (``split_module`` carries only parameters and batch statistics): the key is a call
argument, ``rngs``.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.sharding import constrain_batch

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


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Inverted dropout of each element of ``x`` with probability ``rate`` (``nn.Dropout``).

    Kept elements are scaled by ``1 / (1 - rate)``, so the expectation is unchanged.
    """
    if rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def drop_path(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Stochastic depth on a residual branch ``x`` of shape ``(N, ...)``, per sample.

    Each sample's whole branch is zeroed with probability ``rate`` (one Bernoulli draw per
    sample, shared by all its tokens and features) and kept ones are scaled by
    ``1 / (1 - rate)``: timm's ``drop_path(scale_by_keep=True)`` (Huang et al., 2016, "Deep
    Networks with Stochastic Depth"; DeiT). ``rate=1`` drops every sample.
    """
    if rate == 0.0:
        return x
    keep_prob = 1.0 - rate
    keep = jax.random.bernoulli(key, keep_prob, (x.shape[0],) + (1,) * (x.ndim - 1))
    if keep_prob > 0.0:
        x = x / keep_prob
    return jnp.where(keep, x, 0.0).astype(x.dtype)


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
    softmax in float32) and the output projection ``proj``, followed by dropout at ``drop_rate``
    when called with a ``key`` (timm's ``proj_drop``; no attention-weight dropout).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        dtype: Any,
        rngs: nnx.Rngs,
    ):
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.drop_rate = drop_rate
        self.qkv = _linear(dim, 3 * dim, use_bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.proj = _linear(dim, dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        n, t, d = x.shape
        qkv = constrain_batch(self.qkv(x)).reshape(n, t, 3, self.num_heads, d // self.num_heads)
        y = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
        y = constrain_batch(self.proj(constrain_batch(y.reshape(n, t, d))))
        return y if key is None else dropout(y, self.drop_rate, key)


class Mlp(nnx.Module):
    """``fc2(gelu(fc1(x)))`` with the exact (erf) GELU, as PyTorch's ``nn.GELU()``.

    Called with a ``key``, dropout at ``drop_rate`` follows the GELU and ``fc2`` (timm's ``Mlp``).
    """

    def __init__(
        self, dim: int, hidden_dim: int, *, drop_rate: float = 0.0, dtype: Any, rngs: nnx.Rngs
    ):
        self.drop_rate = drop_rate
        self.fc1 = _linear(dim, hidden_dim, dtype=dtype, rngs=rngs)
        self.fc2 = _linear(hidden_dim, dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        h = nnx.gelu(constrain_batch(self.fc1(x)), approximate=False)
        if key is None:
            return constrain_batch(self.fc2(h))
        hidden_key, out_key = jax.random.split(key)
        h = dropout(h, self.drop_rate, hidden_key)
        return dropout(constrain_batch(self.fc2(h)), self.drop_rate, out_key)


class LayerScale(nnx.Module):
    """Per-channel scale ``x * gamma`` of a residual branch (CaiT, Touvron et al., 2021).

    ``gamma`` ``(dim,)`` starts at ``init_value`` everywhere (1e-5 in DINOv2, 1e-1 in CaiT's
    shallow models); timm's and DINOv2's ``LayerScale.gamma``.
    """

    def __init__(self, dim: int, init_value: float):
        self.gamma = nnx.Param(jnp.full((dim,), init_value, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.gamma[...].astype(x.dtype)


class Block(nnx.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    Called with a ``key``, each residual branch goes through dropout at ``drop_rate`` inside
    ``attn`` and ``mlp``, then ``drop_path`` at ``drop_path_rate`` (independent draws for the
    two branches, as timm's ``Block``); without one the block is deterministic.

    ``layer_scale``: when a float, each branch is multiplied by a learned per-channel
    ``LayerScale`` (``self.ls1`` after attention, ``self.ls2`` after the MLP, initialised to
    ``layer_scale``) before drop path and the residual sum, as timm's and DINOv2's
    ``x + drop_path(ls1(attn(norm1(x))))``. ``None`` (default): no scale and no parameters.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale: float | None = None,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.drop_path_rate = drop_path_rate
        self.norm1 = _layer_norm(dim, dtype=dtype, rngs=rngs)
        self.attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, drop_rate=drop_rate, dtype=dtype, rngs=rngs
        )
        self.norm2 = _layer_norm(dim, dtype=dtype, rngs=rngs)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop_rate=drop_rate, dtype=dtype, rngs=rngs)
        self.ls1 = None if layer_scale is None else LayerScale(dim, layer_scale)
        self.ls2 = None if layer_scale is None else LayerScale(dim, layer_scale)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        x = constrain_batch(x)
        if key is None:
            x = x + _scaled(self.ls1, self.attn(self.norm1(x)))
            return constrain_batch(x + _scaled(self.ls2, self.mlp(self.norm2(x))))
        attn_key, attn_path_key, mlp_key, mlp_path_key = jax.random.split(key, 4)
        y = _scaled(self.ls1, self.attn(self.norm1(x), key=attn_key))
        x = x + drop_path(y, self.drop_path_rate, attn_path_key)
        y = _scaled(self.ls2, self.mlp(self.norm2(x), key=mlp_key))
        return constrain_batch(x + drop_path(y, self.drop_path_rate, mlp_path_key))


def _scaled(scale: LayerScale | None, y: jax.Array) -> jax.Array:
    return y if scale is None else scale(y)


class VisionTransformer(nnx.Module):
    """ViT feature extractor: ``(N, H, W, in_channels)`` → ``(N, embed_dim)``.

    ``H`` and ``W`` must be multiples of ``patch_size``; position embeddings are interpolated when
    they differ from ``img_size`` (see ``interpolate_pos_embed``). ``pool="cls"`` (DINO, MoCo v3)
    returns the final-normed [CLS] token; ``pool="mean"`` the final LayerNorm of the mean of the
    patch tokens (timm's ``global_pool="avg"``, MAE). ``feature_dim = embed_dim``. Features are
    float32 whatever ``dtype`` (the computation dtype; parameters are always float32).

    ``drop_rate`` is timm's dropout (after the position embeddings, the attention projection,
    the MLP's GELU and its output); ``drop_path_rate`` is the stochastic-depth rate of the last
    block, block ``i`` (from 0) getting ``drop_path_rate * i / (depth - 1)`` (timm's
    ``linspace(0, drop_path_rate, depth)``, DeiT, MAE). Both act only in train mode (the
    ``deterministic`` attribute, set by ``.train()`` / ``.eval()``, as for ``nnx.Dropout``) and
    need a key passed as ``rngs``; at the defaults (0) train and eval mode compute the same
    function. There is no BatchNorm, so ``batch_stats`` is empty. Blocks live in
    ``self.blocks[i]``.

    ``remat`` recomputes each block's activations in the backward pass (``nnx.remat``):
    ``"full"`` keeps only the block's input, ``"dots_saveable"`` also keeps the outputs of
    its matrix products (JAX's ``checkpoint_policies.dots_saveable``: less recomputation,
    more memory). Results are unchanged.

    Options, all off by default (the default model's parameters and outputs do not change, and
    the options' parameters are drawn after all others, so turning one on leaves every other
    initial value of a given seed as it was):

    - ``mask_token=True`` creates ``self.mask_token`` ``(1, 1, D)``, zero-initialised as iBOT's
      ``masked_embed`` and DINOv2's ``mask_token`` (both ``(1, D)`` there); ``__call__``'s
      ``token_mask`` replaces the masked patch embeddings by it.
    - ``num_registers=R > 0`` adds ``self.reg_token`` ``(1, R, D)`` (timm's name; DINOv2's
      ``register_tokens``), normal with std 1e-6 as both: register tokens (Darcet et al., 2024,
      "Vision Transformers Need Registers") inserted after [CLS] once the position embeddings
      are added (they get none), seen by every block and dropped from every output.
    - ``layer_scale=g`` gives each block per-channel ``LayerScale`` parameters
      ``blocks[i].ls1.gamma`` and ``blocks[i].ls2.gamma`` ``(D,)`` initialised to ``g`` (CaiT;
      DINOv2 uses 1e-5), scaling both residual branches (see ``Block``).

    Mapping to timm: ``reg_token`` and ``ls{1,2}.gamma`` have timm's names and shapes. Our
    ``pos_embed`` keeps an entry for [CLS] whatever the registers; timm's register models use
    ``no_embed_class=True`` (no [CLS] entry), whose ``cls_token`` is our ``cls_token +
    pos_embed[:, :1]`` (the [CLS] position is never interpolated, so that is exact).
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
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dtype: Any = jnp.float32,
        remat: str | None = None,
        mask_token: bool = False,
        num_registers: int = 0,
        layer_scale: float | None = None,
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
        if remat is not None and remat not in REMAT_POLICIES:
            raise ValueError(
                f"Unknown remat policy {remat!r}; expected one of {list(REMAT_POLICIES)}."
            )
        self.remat = remat
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must lie in [0, 1), got {drop_rate!r}.")
        if not 0.0 <= drop_path_rate <= 1.0:
            raise ValueError(f"drop_path_rate must lie in [0, 1], got {drop_path_rate!r}.")
        if not isinstance(num_registers, int) or num_registers < 0:
            raise ValueError(
                f"num_registers must be a non-negative int (0: no registers; DINOv2 uses 4), "
                f"got {num_registers!r}."
            )
        if layer_scale is not None and not layer_scale > 0.0:
            raise ValueError(
                f"layer_scale must be None (off) or a positive initial value such as 1e-5 "
                f"(DINOv2), got {layer_scale!r}."
            )
        self.num_registers = num_registers
        self.patch_size = patch_size
        self.grid_size = (img_size // patch_size,) * 2
        self.pool = pool
        self.drop_rate = drop_rate
        self.drop_path_rate = drop_path_rate
        self.deterministic = False
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
                    drop_rate=drop_rate,
                    drop_path_rate=drop_path_rate * i / max(depth - 1, 1),
                    layer_scale=layer_scale,
                    dtype=dtype,
                    rngs=rngs,
                )
                for i in range(depth)
            ]
        )
        self.norm = _layer_norm(embed_dim, dtype=dtype, rngs=rngs)
        self.feature_dim = embed_dim
        self.mask_token = nnx.Param(jnp.zeros((1, 1, embed_dim))) if mask_token else None
        self.reg_token = (
            nnx.Param(1e-6 * jax.random.normal(rngs.params(), (1, num_registers, embed_dim)))
            if num_registers
            else None
        )

    def __call__(
        self,
        x: jax.Array,
        *,
        return_all: bool = False,
        keep_indices: jax.typing.ArrayLike | None = None,
        token_mask: jax.typing.ArrayLike | None = None,
        rngs: jax.Array | None = None,
    ) -> jax.Array | dict[str, jax.Array]:
        """Pooled features ``(N, D)``, or with ``return_all`` the token sequences too.

        ``keep_indices``: int array ``(N, K)`` of the patch positions (row-major, ``0 … L - 1``
        for ``L = (H / p) (W / p)`` patches) each image keeps, as MAE's random masking: patches
        are embedded, position embeddings added, then only the ``K`` listed are gathered, in the
        given order, behind the [CLS] token (always kept); the blocks see ``1 + K`` tokens and
        ``pool="mean"`` averages the ``K`` kept ones. Values are not checked (they may be
        traced): an index ``>= L`` gives NaN tokens, a negative one counts from the end.

        ``token_mask``: bool array ``(N, L)`` over the patch positions (row-major), for masked
        image modelling (iBOT, BEiT, SimMIM): where ``True`` the patch embedding is replaced by
        the learned ``mask_token`` before the position embeddings are added, as iBOT's
        ``prepare_tokens`` and DINOv2's ``prepare_tokens_with_masks`` do. Needs a model built
        with ``mask_token=True``. Combines with ``keep_indices`` (masking comes first) and with
        ``return_all`` (the masked positions' patch tokens are ``tokens[:, 1:]``).

        ``return_all=True`` returns a dict of float32 arrays: ``"tokens"`` ``(N, 1 + K, D)``
        the final-LayerNorm-ed sequence, [CLS] first (MAE's encoder output; ``K = L`` without
        ``keep_indices``); ``"block1"`` … ``"block{depth}"`` ``(N, 1 + K, D)`` each block's
        output before the final norm; ``"pooled"`` the default output. Register tokens are
        left out of all of these (so ``tokens[:, 1:]`` are always the patch tokens); with
        ``num_registers=R > 0`` there is one more entry, ``"registers"`` ``(N, R, D)``, their
        final-LayerNorm-ed outputs (DINOv2's ``x_norm_regtokens``). ``pool="mean"`` averages
        the patch tokens only.

        ``rngs``: a ``jax.random.key`` for dropout and drop path, needed in train mode when
        ``drop_rate`` or ``drop_path_rate`` is positive and ignored otherwise.
        """
        n, h, w, _ = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f"Input of {h}x{w} pixels is not a multiple of patch_size {p}; resize or crop "
                f"the images to a multiple of {p}."
            )
        key = self._dropout_key(rngs)
        num_patches = (h // p) * (w // p)
        x = constrain_batch(self.patch_embed(x)).reshape(n, num_patches, -1)
        dtype = x.dtype
        if token_mask is not None:
            token_mask = self._check_token_mask(token_mask, n, num_patches)
            x = jnp.where(token_mask[:, :, None], self.mask_token[...].astype(dtype), x)
        cls = jnp.broadcast_to(self.cls_token[...], (n, 1, x.shape[-1])).astype(dtype)
        pos = interpolate_pos_embed(self.pos_embed[...], (h // p, w // p)).astype(dtype)
        if keep_indices is None:
            x = jnp.concatenate([cls, x], axis=1) + pos
        else:
            keep_indices = _check_keep_indices(keep_indices, n, num_patches)
            x = jnp.take_along_axis(x + pos[:, 1:], keep_indices[:, :, None], axis=1)
            x = jnp.concatenate([cls + pos[:, :1], x], axis=1)
        r = self.num_registers
        if r:
            reg = jnp.broadcast_to(self.reg_token[...], (n, r, x.shape[-1])).astype(dtype)
            x = jnp.concatenate([x[:, :1], reg, x[:, 1:]], axis=1)
        if key is not None:
            key, pos_drop_key = jax.random.split(key)
            x = dropout(x, self.drop_rate, pos_drop_key)
        x = constrain_batch(x)
        block_keys = (
            [None] * len(self.blocks) if key is None else jax.random.split(key, len(self.blocks))
        )
        outputs = {}
        for i, (block, block_key) in enumerate(zip(self.blocks, block_keys, strict=True)):
            x = (
                REMAT_POLICIES[self.remat](block, x, block_key)
                if self.remat
                else block(x, key=block_key)
            )
            outputs[f"block{i + 1}"] = x
        pooled = x[:, 0] if self.pool == "cls" else jnp.mean(x[:, 1 + r :], axis=1)
        pooled = self.norm(pooled).astype(jnp.float32)
        if not return_all:
            return pooled
        outputs = {name: _drop_registers(y, r).astype(jnp.float32) for name, y in outputs.items()}
        tokens = self.norm(x).astype(jnp.float32)
        out = {"tokens": _drop_registers(tokens, r), **outputs, "pooled": pooled}
        if r:
            out["registers"] = tokens[:, 1 : 1 + r]
        return out

    def _check_token_mask(self, token_mask: jax.typing.ArrayLike, n: int, num_patches: int):
        if self.mask_token is None:
            raise ValueError(
                "token_mask needs a mask token: build the VisionTransformer with mask_token=True."
            )
        token_mask = jnp.asarray(token_mask)
        if token_mask.shape != (n, num_patches) or token_mask.dtype != jnp.bool_:
            raise ValueError(
                f"token_mask must be a bool array of shape (N, L) = ({n}, {num_patches}), True "
                f"where a patch is masked; got {token_mask.dtype} of shape {token_mask.shape}."
            )
        return token_mask

    def _dropout_key(self, rngs: jax.Array | None) -> jax.Array | None:
        """``rngs`` if dropout or drop path is active, else ``None``; raises if it is needed."""
        if self.deterministic or (self.drop_rate == 0.0 and self.drop_path_rate == 0.0):
            return None
        if rngs is None:
            raise ValueError(
                f"VisionTransformer has drop_rate={self.drop_rate} and drop_path_rate="
                f"{self.drop_path_rate} and is in train mode, so it needs a random key: pass "
                "rngs=jax.random.key(...) (apply_module(..., train=True, rngs=key)), or call "
                ".eval() (train=False) for deterministic features."
            )
        return rngs


def _drop_registers(x: jax.Array, num_registers: int) -> jax.Array:
    if not num_registers:
        return x
    return jnp.concatenate([x[:, :1], x[:, 1 + num_registers :]], axis=1)


def _block_call(block: Block, x: jax.Array, key: jax.Array | None) -> jax.Array:
    return block(x, key=key)


REMAT_POLICIES: dict[str, Callable[..., jax.Array]] = {
    "full": nnx.remat(_block_call),
    "dots_saveable": nnx.remat(_block_call, policy=jax.checkpoint_policies.dots_saveable),
}


def _check_keep_indices(keep_indices: jax.typing.ArrayLike, n: int, num_patches: int) -> jax.Array:
    keep_indices = jnp.asarray(keep_indices)
    if keep_indices.ndim != 2 or keep_indices.shape[0] != n:
        raise ValueError(
            f"keep_indices must have shape (N, K) = ({n}, K), one row of patch indices per image; "
            f"got shape {keep_indices.shape}."
        )
    if not jnp.issubdtype(keep_indices.dtype, jnp.integer):
        raise ValueError(
            f"keep_indices must be integer patch indices in 0..{num_patches - 1}; got dtype "
            f"{keep_indices.dtype}."
        )
    return keep_indices


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


def vit_large(*, rngs: nnx.Rngs, **kwargs: Any) -> VisionTransformer:
    """ViT-L/16: width 1024, 24 blocks, 16 heads (MAE's, MoCo v3's and I-JEPA's ViT-L/16;
    303.3 M parameters without a head); kwargs override."""
    return _vit({"embed_dim": 1024, "depth": 24, "num_heads": 16}, rngs, kwargs)


def vit_huge(*, rngs: nnx.Rngs, **kwargs: Any) -> VisionTransformer:
    """ViT-H/14: width 1280, 32 blocks, 16 heads, 14-pixel patches (MAE's and I-JEPA's;
    630.8 M parameters without a head); kwargs override."""
    return _vit({"embed_dim": 1280, "depth": 32, "num_heads": 16, "patch_size": 14}, rngs, kwargs)


def vit_giant(*, rngs: nnx.Rngs, **kwargs: Any) -> VisionTransformer:
    """ViT-g/14 with DINOv2's shape: width 1536, 40 blocks, 24 heads, 14-pixel patches;
    1.135 B parameters. DINOv2's own ViT-g/14 has a SwiGLU MLP of about the same size and
    LayerScale (1.14 B counted by parts; the paper says 1.1 B): this one keeps the GELU MLP
    (ratio 4) of the other ViTs. kwargs override."""
    return _vit({"embed_dim": 1536, "depth": 40, "num_heads": 24, "patch_size": 14}, rngs, kwargs)


VITS: dict[str, Callable[..., nnx.Module]] = {
    "vit_tiny": vit_tiny,
    "vit_small": vit_small,
    "vit_base": vit_base,
    "vit_large": vit_large,
    "vit_huge": vit_huge,
    "vit_giant": vit_giant,
}


__all__ = [
    "VITS",
    "Attention",
    "Block",
    "LayerScale",
    "Mlp",
    "VisionTransformer",
    "drop_path",
    "dropout",
    "interpolate_pos_embed",
    "vit_base",
    "vit_giant",
    "vit_huge",
    "vit_large",
    "vit_small",
    "vit_tiny",
]
