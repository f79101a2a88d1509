"""model.remat: a ResNet or a ViT recomputes each block's activations in the backward pass:
the same loss, gradients and BatchNorm statistics as without it, and the recomputation in the
program JAX hands to XLA (XLA's CPU compiler removes it again for convolutions, so no memory
is measured here: launch/plan.py measures it for TPUs)."""

from functools import partial

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from ssl_jax.models import make_backbone, module_def
from ssl_jax.models.resnet import BasicBlock, ResNet
from ssl_jax.models.vit import VisionTransformer


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


@pytest.mark.parametrize("policy", ["full", "dots_saveable"])
def test_vit_remat_changes_no_result_and_recomputes_per_policy(policy):
    tiny = partial(VisionTransformer, img_size=8, patch_size=4, embed_dim=16, depth=2, num_heads=2)
    plain, remat = module_def(tiny), module_def(partial(tiny, remat=policy))
    params, stats = plain.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    results = [grad_fn(part)(params, stats, x) for part in (plain, remat)]
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bit-identical
    hlo = [grad_fn(part).lower(params, stats, x).as_text() for part in (plain, remat)]
    dots = [text.count("stablehlo.dot_general") for text in hlo]
    assert "optimization_barrier" in hlo[1] and "optimization_barrier" not in hlo[0]
    if policy == "full":  # per block, the products whose outputs the backward pass reads:
        # qkv, q k^T, attention x v, proj and the first MLP layer (not the last one's)
        assert dots[1] == dots[0] + 2 * 5, f"products without / with remat: {dots}"
    else:  # the products' outputs are kept: nothing of them is computed again
        assert dots[1] == dots[0], f"products without / with remat: {dots}"


def test_the_config_reaches_the_backbones():
    model = dict(backbone="resnet18", width=2, stem="cifar", dtype="float32")
    for remat in (False, True):
        part = make_backbone(ml_collections.ConfigDict(model | {"remat": remat}))
        assert nnx.eval_shape(lambda p=part: p.build(rngs=nnx.Rngs(0))).remat is remat
    with pytest.raises(ValueError, match="ResNets recompute whole blocks only"):
        make_backbone(
            ml_collections.ConfigDict(model | {"remat": True, "remat_policy": "dots_saveable"})
        )
    vit = dict(backbone="vit_tiny", depth=1, embed_dim=8, num_heads=2, img_size=8, patch_size=4)
    for fields, want in [
        ({}, None),
        ({"remat": True}, "full"),
        ({"remat": True, "remat_policy": "dots_saveable"}, "dots_saveable"),
    ]:
        part = make_backbone(ml_collections.ConfigDict(vit | fields))
        assert nnx.eval_shape(lambda p=part: p.build(rngs=nnx.Rngs(0))).remat == want
    with pytest.raises(ValueError, match="Unknown remat policy 'everything'"):
        part = make_backbone(
            ml_collections.ConfigDict(vit | {"remat": True, "remat_policy": "everything"})
        )
        part.build(rngs=nnx.Rngs(0))
