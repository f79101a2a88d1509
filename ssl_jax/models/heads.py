"""Heads on top of backbone features: MLP projector/predictor, DINO's head, a linear classifier."""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.losses.normalize import l2_normalize
from ssl_jax.models.resnet import BN_EPSILON, BN_MOMENTUM
from ssl_jax.sharding import constrain_batch


def _bn(num_features: int, *, affine: bool = True, dtype: Any, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(
        num_features,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        use_bias=affine,
        use_scale=affine,
        dtype=dtype,
        rngs=rngs,
    )


class MLPHead(nnx.Module):
    """MLP projector or predictor: ``(N, in_features)`` → ``(N, out_features)``.

    ``num_layers`` Linear layers in all: each of the first ``num_layers - 1`` maps to
    ``hidden_features`` and is followed by BatchNorm (if ``use_bn``) and ReLU; the last one maps to
    ``out_features`` with no activation. With ``last_bn`` a BatchNorm follows the last Linear
    (then without bias, as it would be cancelled), affine or not per ``last_bn_affine``.

    - SimCLR projector (Chen et al., 2020): ``num_layers=2`` (v1) or 3 (v2), ``last_bn`` in v2.
    - BYOL projector and predictor (Grill et al., 2020): ``num_layers=2, use_bn=True``.
    - MoCo v3 (Chen et al., 2021): projector ``num_layers=3, last_bn=True,
      last_bn_affine=False``; predictor ``num_layers=2, last_bn=True, last_bn_affine=False``.
    - Barlow Twins (Zbontar et al., 2021): ``num_layers=3, last_bn=True, last_bn_affine=False``
      (its loss normalises the embedding itself).

    Hidden Linear layers have no bias when BatchNorm follows them (MoCo v3 convention; the bias
    would be cancelled by the mean subtraction). Linear weights use Flax's default LeCun-normal
    initialisation. ``dtype`` is the computation dtype (``None``: promoted from inputs and params).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        *,
        num_layers: int = 2,
        use_bn: bool = True,
        last_bn: bool = False,
        last_bn_affine: bool = True,
        dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        if num_layers < 1:
            raise ValueError(f"MLPHead needs num_layers >= 1, got {num_layers}.")
        dims = [in_features] + [hidden_features] * (num_layers - 1) + [out_features]
        self.linears = nnx.List(
            nnx.Linear(
                d_in,
                d_out,
                use_bias=not (use_bn if i < num_layers - 1 else last_bn),
                dtype=dtype,
                rngs=rngs,
            )
            for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True))
        )
        self.norms = nnx.List(
            _bn(hidden_features, dtype=dtype, rngs=rngs) if use_bn else None
            for _ in range(num_layers - 1)
        )
        self.last_norm = (
            _bn(out_features, affine=last_bn_affine, dtype=dtype, rngs=rngs) if last_bn else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for linear, norm in zip(self.linears[:-1], self.norms, strict=True):
            x = constrain_batch(linear(x))
            if norm is not None:
                x = norm(x)
            x = nnx.relu(x)
        x = constrain_batch(self.linears[-1](x))
        if self.last_norm is not None:
            x = self.last_norm(x)
        return x


class LinearClassifier(nnx.Module):
    """A single Linear layer ``(N, in_features)`` → logits ``(N, num_classes)``.

    Weights and bias start at zero: the probe's loss is convex in them, so the start does not
    change the optimum, and all classes start equally likely (log-loss ``log(num_classes)``),
    as in big_vision's zero-initialised heads.

    With ``batch_norm`` an affine-free BatchNorm normalises the features first (MAE's linear
    probe head, He et al., 2022): the head's first steps then do not scale with the feature
    norm, which differs by orders of magnitude between pretraining methods.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        batch_norm: bool = False,
        dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        self.norm = _bn(in_features, affine=False, dtype=dtype, rngs=rngs) if batch_norm else None
        self.linear = nnx.Linear(
            in_features,
            num_classes,
            kernel_init=nnx.initializers.zeros,
            bias_init=nnx.initializers.zeros,
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.norm is not None:
            x = self.norm(x)
        return self.linear(x)


__all__ = ["DINOHead", "LinearClassifier", "MLPHead", "WeightNormLinear"]


_TRUNC_NORMAL = nnx.initializers.truncated_normal(stddev=0.02)


class WeightNormLinear(nnx.Module):
    """``x @ (g * v / ||v||)``, no bias: ``torch.nn.utils.weight_norm(Linear(bias=False))``.

    Each output's weight column ``v[:, k]`` is divided by its norm in the forward pass, so
    only its direction is learnt; with ``learn_norm=False`` the norm ``g`` is fixed to 1
    (DINO's ``norm_last_layer=True``), otherwise ``g`` is a parameter starting at 1.
    """

    def __init__(self, in_features: int, out_features: int, *, learn_norm: bool, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_TRUNC_NORMAL(rngs.params(), (in_features, out_features)))
        self.scale = nnx.Param(jnp.ones((out_features,))) if learn_norm else None

    def __call__(self, x: jax.Array) -> jax.Array:
        v = self.kernel[...]
        w = l2_normalize(v, axis=0)
        if self.scale is not None:
            w = w * self.scale[...]
        return x @ w


class DINOHead(nnx.Module):
    """DINO's projection head: MLP -> L2-normalise -> weight-normalised linear to K outputs.

    The MLP has ``num_layers`` Linear layers (in -> hidden -> ... -> bottleneck), exact GELU
    after each hidden one, BatchNorm before the GELU if ``use_bn``; weights start from a
    truncated normal with std 0.02, biases from 0 (the authors' ``DINOHead``). The last layer
    (:class:`WeightNormLinear`, ``last_layer``) has its norm fixed to 1 when
    ``norm_last_layer``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden_features: int = 2048,
        bottleneck_features: int = 256,
        num_layers: int = 3,
        use_bn: bool = False,
        norm_last_layer: bool = True,
        rngs: nnx.Rngs,
    ):
        if num_layers < 1:
            raise ValueError(f"DINOHead needs num_layers >= 1, got {num_layers}.")
        dims = [in_features] + [hidden_features] * (num_layers - 1) + [bottleneck_features]
        self.linears = nnx.List(
            nnx.Linear(a, b, kernel_init=_TRUNC_NORMAL, rngs=rngs)
            for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.norms = nnx.List(
            _bn(hidden_features, dtype=None, rngs=rngs) if use_bn else None
            for _ in range(num_layers - 1)
        )
        self.last_layer = WeightNormLinear(
            bottleneck_features, out_features, learn_norm=not norm_last_layer, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for linear, norm in zip(self.linears[:-1], self.norms, strict=True):
            x = constrain_batch(linear(x))
            if norm is not None:
                x = norm(x)
            x = nnx.gelu(x, approximate=False)
        x = constrain_batch(self.linears[-1](x))
        x = l2_normalize(x)
        return constrain_batch(self.last_layer(x))
