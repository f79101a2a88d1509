"""Heads on top of backbone features: MLP projector/predictor and a linear classifier."""

from typing import Any

import jax
from flax import nnx

from ssl_jax.models.resnet import BN_EPSILON, BN_MOMENTUM


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
            x = linear(x)
            if norm is not None:
                x = norm(x)
            x = nnx.relu(x)
        x = self.linears[-1](x)
        if self.last_norm is not None:
            x = self.last_norm(x)
        return x


class LinearClassifier(nnx.Module):
    """A single Linear layer ``(N, in_features)`` → logits ``(N, num_classes)``.

    Weights and bias start at zero: the probe's loss is convex in them, so the start does not
    change the optimum, and all classes start equally likely (log-loss ``log(num_classes)``),
    as in big_vision's zero-initialised heads.
    """

    def __init__(self, in_features: int, num_classes: int, *, dtype: Any = None, rngs: nnx.Rngs):
        self.linear = nnx.Linear(
            in_features,
            num_classes,
            kernel_init=nnx.initializers.zeros,
            bias_init=nnx.initializers.zeros,
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(x)


__all__ = ["LinearClassifier", "MLPHead"]
