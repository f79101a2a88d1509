"""ResNet backbones in Flax NNX, returning globally pooled features (no classifier).

Called with ``return_all=True``, a ``ResNet`` returns the feature maps of its stem and of every
stage as well.

The layout follows torchvision's ResNet v1.5 (He et al., 2016, "Deep Residual Learning for Image
Recognition"; stride on the 3×3 conv of the bottleneck), so that at ``width=64`` with the
``"imagenet"`` stem the parameter counts equal torchvision's models without their ``fc`` layer:
resnet18 11,176,512, resnet34 21,284,672, resnet50 23,508,032.

Conventions: NHWC float inputs; convolutions have no bias and are followed by BatchNorm
(momentum 0.9, i.e. PyTorch's 0.1, epsilon 1e-5); convolution kernels use He-normal fan-out
initialisation (untruncated, as torchvision's ``kaiming_normal_(mode="fan_out")``); with
``zero_init_residual`` the last BatchNorm scale of every residual branch starts at zero, so each
block starts as ``relu(shortcut(x))`` (Goyal et al., 2017, "Accurate, Large Minibatch SGD").
Paddings are explicit and symmetric, as in PyTorch, so ported weights give the same outputs.

The ``"cifar"`` stem (3×3 stride-1 conv, no max-pool) is the small-image variant used by SimCLR's
CIFAR-10 experiments and solo-learn.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
STEMS = ("imagenet", "cifar")

conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(
    in_features: int,
    out_features: int,
    kernel_size: int,
    *,
    strides: int = 1,
    dtype: Any,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    pad = (kernel_size - 1) // 2
    return nnx.Conv(
        in_features,
        out_features,
        (kernel_size, kernel_size),
        strides=(strides, strides),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=conv_init,
        dtype=dtype,
        rngs=rngs,
    )


def _bn(
    num_features: int, *, zero_scale: bool = False, dtype: Any, rngs: nnx.Rngs
) -> nnx.BatchNorm:
    return nnx.BatchNorm(
        num_features,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        scale_init=nnx.initializers.zeros if zero_scale else nnx.initializers.ones,
        dtype=dtype,
        rngs=rngs,
    )


class Shortcut(nnx.Module):
    """Projection shortcut: 1×1 convolution with stride ``strides``, then BatchNorm."""

    def __init__(
        self, in_features: int, out_features: int, *, strides: int, dtype: Any, rngs: nnx.Rngs
    ):
        self.conv = _conv(in_features, out_features, 1, strides=strides, dtype=dtype, rngs=rngs)
        self.bn = _bn(out_features, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.bn(self.conv(x))


class BasicBlock(nnx.Module):
    """Two 3×3 convolutions; output channels ``features`` (``expansion = 1``)."""

    expansion = 1

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        strides: int = 1,
        zero_init_residual: bool = True,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        out_features = features * self.expansion
        self.conv1 = _conv(in_features, features, 3, strides=strides, dtype=dtype, rngs=rngs)
        self.bn1 = _bn(features, dtype=dtype, rngs=rngs)
        self.conv2 = _conv(features, out_features, 3, dtype=dtype, rngs=rngs)
        self.bn2 = _bn(out_features, zero_scale=zero_init_residual, dtype=dtype, rngs=rngs)
        self.shortcut = (
            Shortcut(in_features, out_features, strides=strides, dtype=dtype, rngs=rngs)
            if strides != 1 or in_features != out_features
            else None
        )

    @property
    def last_bn(self) -> nnx.BatchNorm:
        return self.bn2

    def __call__(self, x: jax.Array) -> jax.Array:
        residual = x if self.shortcut is None else self.shortcut(x)
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return nnx.relu(y + residual)


class Bottleneck(nnx.Module):
    """1×1 reduce, 3×3 (carrying the stride), 1×1 expand; output ``4 * features`` channels."""

    expansion = 4

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        strides: int = 1,
        zero_init_residual: bool = True,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        out_features = features * self.expansion
        self.conv1 = _conv(in_features, features, 1, dtype=dtype, rngs=rngs)
        self.bn1 = _bn(features, dtype=dtype, rngs=rngs)
        self.conv2 = _conv(features, features, 3, strides=strides, dtype=dtype, rngs=rngs)
        self.bn2 = _bn(features, dtype=dtype, rngs=rngs)
        self.conv3 = _conv(features, out_features, 1, dtype=dtype, rngs=rngs)
        self.bn3 = _bn(out_features, zero_scale=zero_init_residual, dtype=dtype, rngs=rngs)
        self.shortcut = (
            Shortcut(in_features, out_features, strides=strides, dtype=dtype, rngs=rngs)
            if strides != 1 or in_features != out_features
            else None
        )

    @property
    def last_bn(self) -> nnx.BatchNorm:
        return self.bn3

    def __call__(self, x: jax.Array) -> jax.Array:
        residual = x if self.shortcut is None else self.shortcut(x)
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = nnx.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return nnx.relu(y + residual)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nnx.Module):
    """ResNet feature extractor: ``(N, H, W, in_channels)`` → ``(N, feature_dim)``.

    Called with ``return_all=True`` it also returns the stem's and every stage's feature map
    (for dense or multi-scale objectives); see ``__call__``.

    Stage ``i`` has ``stage_sizes[i]`` blocks of ``width * 2**i`` base channels; every stage after
    the first halves the resolution in its first block. ``feature_dim`` is
    ``width * 2**(len(stage_sizes) - 1) * block.expansion`` (8w for BasicBlock and 32w for
    Bottleneck with four stages). The pooled features are returned in float32 whatever ``dtype``
    (the computation dtype of convolutions and BatchNorm; parameters are always float32).

    With ``remat`` each block keeps only its input for the backward pass and recomputes its
    activations there (``nnx.remat``): less activation memory on GPU and TPU for about one more
    forward pass. XLA's CPU compiler removes the recomputation again (measured: the compiled
    gradient has as many convolutions as without it), so on CPU it changes nothing.

    Blocks live in ``self.stages[i][j]``; call ``.train()`` / ``.eval()`` (or use
    ``ssl_jax.models.apply_module``) to choose batch or running BatchNorm statistics.
    """

    def __init__(
        self,
        *,
        stage_sizes: Sequence[int],
        block: Block,
        width: int = 64,
        stem: str = "imagenet",
        in_channels: int = 3,
        zero_init_residual: bool = True,
        dtype: Any = jnp.float32,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        if stem not in STEMS:
            raise ValueError(f"Unknown ResNet stem {stem!r}; expected one of {list(STEMS)}.")
        if not stage_sizes or any(n < 1 for n in stage_sizes):
            raise ValueError(f"stage_sizes must be non-empty positive ints, got {stage_sizes!r}.")
        if width < 1:
            raise ValueError(f"width must be a positive int, got {width!r}.")
        self.stem = stem
        self.remat = remat
        kernel, strides = (7, 2) if stem == "imagenet" else (3, 1)
        self.conv1 = _conv(in_channels, width, kernel, strides=strides, dtype=dtype, rngs=rngs)
        self.bn1 = _bn(width, dtype=dtype, rngs=rngs)

        stages = []
        in_features = width
        for i, num_blocks in enumerate(stage_sizes):
            features = width * 2**i
            blocks = []
            for j in range(num_blocks):
                blocks.append(
                    block(
                        in_features,
                        features,
                        strides=2 if i > 0 and j == 0 else 1,
                        zero_init_residual=zero_init_residual,
                        dtype=dtype,
                        rngs=rngs,
                    )
                )
                in_features = features * block.expansion
            stages.append(nnx.List(blocks))
        self.stages = nnx.List(stages)
        self.feature_dim = in_features

    def __call__(
        self, x: jax.Array, *, return_all: bool = False
    ) -> jax.Array | dict[str, jax.Array]:
        """Pooled features ``(N, feature_dim)``, or with ``return_all`` every stage's output.

        ``return_all=True`` returns a dict of float32 arrays: ``"stem"`` ``(N, H', W', width)``
        after the stem (conv, BatchNorm, ReLU, and the 3×3 stride-2 max-pool of the
        ``"imagenet"`` stem: ``H' = H / 4`` there, ``H' = H`` for ``"cifar"``), ``"stage1"`` …
        ``"stage{len(stage_sizes)}"`` the feature map after each stage (stage ``i`` at
        ``H' / 2**(i - 1)``, ``width * 2**(i - 1) * block.expansion`` channels; torchvision's
        ``layer1`` … ``layer4``) and ``"pooled"`` the default output.
        """
        x = nnx.relu(self.bn1(self.conv1(x)))
        if self.stem == "imagenet":
            x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        features = {"stem": x}
        for i, stage in enumerate(self.stages):
            for block in stage:
                x = _call_remat(block, x) if self.remat else block(x)
            features[f"stage{i + 1}"] = x
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        if not return_all:
            return pooled
        return {name: f.astype(jnp.float32) for name, f in features.items()} | {"pooled": pooled}


@nnx.remat
def _call_remat(block: nnx.Module, x: jax.Array) -> jax.Array:
    """``block(x)``, its activations recomputed in the backward pass (``ResNet(remat=True)``)."""
    return block(x)


def resnet18(*, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
    """ResNet-18: BasicBlock, stages (2, 2, 2, 2); ``feature_dim = 8 * width``."""
    return ResNet(stage_sizes=(2, 2, 2, 2), block=BasicBlock, rngs=rngs, **kwargs)


def resnet34(*, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
    """ResNet-34: BasicBlock, stages (3, 4, 6, 3); ``feature_dim = 8 * width``."""
    return ResNet(stage_sizes=(3, 4, 6, 3), block=BasicBlock, rngs=rngs, **kwargs)


def resnet50(*, rngs: nnx.Rngs, **kwargs: Any) -> ResNet:
    """ResNet-50: Bottleneck, stages (3, 4, 6, 3); ``feature_dim = 32 * width``."""
    return ResNet(stage_sizes=(3, 4, 6, 3), block=Bottleneck, rngs=rngs, **kwargs)


RESNETS: dict[str, Callable[..., nnx.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
}


__all__ = [
    "RESNETS",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "Shortcut",
    "resnet18",
    "resnet34",
    "resnet50",
]
