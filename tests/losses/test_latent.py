import doctest

import jax
import numpy as np
import pytest

from ssl_jax.losses import latent
from ssl_jax.losses.latent import data2vec_targets


def targets_reference(layers, layer_norm_targets):
    """Baevski et al.: instance norm of each layer (per example and feature, over the tokens),
    the mean over layers, optionally a layer norm over features; loops in float64."""
    k, n, t, d = layers.shape
    out = np.zeros((n, t, d))
    for layer in layers.astype(np.float64):
        for i in range(n):
            for f in range(d):
                column = layer[i, :, f]
                out[i, :, f] += (column - column.mean()) / np.sqrt(column.var() + 1e-5) / k
    if layer_norm_targets:
        out = (out - out.mean(-1, keepdims=True)) / np.sqrt(out.var(-1, keepdims=True) + 1e-5)
    return out


@pytest.mark.parametrize("layer_norm_targets", [False, True])
def test_data2vec_targets_match_numpy_reference(layer_norm_targets):
    rng = np.random.default_rng(80)
    layers = (rng.normal(size=(3, 2, 5, 4)) * [1.0, 3.0, 0.5, 2.0] + 1.0).astype(np.float32)
    got = jax.jit(lambda a: data2vec_targets(a, layer_norm_targets=layer_norm_targets))(layers)
    np.testing.assert_allclose(got, targets_reference(layers, layer_norm_targets), atol=2e-5)
    plain_mean = layers.astype(np.float64).mean(axis=0)  # without the per-layer norm
    assert np.abs(np.asarray(got) - plain_mean).max() > 0.1


def test_data2vec_targets_are_per_image_and_shape_checked():
    rng = np.random.default_rng(81)
    layers = rng.normal(size=(2, 4, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(
        data2vec_targets(layers)[1:2], data2vec_targets(layers[:, 1:2]), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match=r"\(K, N, T, D\)"):
        data2vec_targets(layers[0])


def test_docstring_example():
    failures, _ = doctest.testmod(latent, verbose=False)
    assert failures == 0
