"""model.remat: a ResNet recomputes each block's activations in the backward pass: the same
loss, gradients and BatchNorm statistics as without it, and the recomputation in the program
JAX hands to XLA (XLA's CPU compiler removes it again, so no memory is measured here)."""

from functools import partial

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from ssl_jax.encoder import make_backbone
from ssl_jax.models import module_def
from ssl_jax.models.resnet import BasicBlock, ResNet


def grad_fn(part):
    def loss(params, stats, x):
        features, new_stats = part.apply(params, stats, x, train=True)
        return jnp.sum(features**2), new_stats

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def test_remat_recomputes_the_blocks_and_changes_no_result():
    tiny = partial(ResNet, stage_sizes=(1, 1), block=BasicBlock, width=4, stem="cifar")
    plain, remat = module_def(tiny), module_def(partial(tiny, remat=True))
    params, stats = plain.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (8, 8, 8, 3))
    results = [grad_fn(part)(params, stats, x) for part in (plain, remat)]
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    hlo = [grad_fn(part).lower(params, stats, x).as_text() for part in (plain, remat)]
    convs = [text.count("stablehlo.convolution") for text in hlo]
    # two blocks: 4 3x3 convolutions and the second block's shortcut, each run again
    assert convs[1] == convs[0] + 5, f"convolutions without / with remat: {convs}"
    assert "optimization_barrier" in hlo[1] and "optimization_barrier" not in hlo[0]


def test_the_config_reaches_the_resnet_and_a_vit_refuses_it():
    model = dict(backbone="resnet18", width=2, stem="cifar", dtype="float32")
    for remat in (False, True):
        part = make_backbone(ml_collections.ConfigDict(model | {"remat": remat}))
        assert nnx.eval_shape(lambda p=part: p.build(rngs=nnx.Rngs(0))).remat is remat
    with pytest.raises(ValueError, match="ResNets only"):
        make_backbone(ml_collections.ConfigDict(dict(backbone="vit_tiny", remat=True)))
