import doctest
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.pretext import lab
from ssl_jax.pretext.lab import lab_to_rgb, rgb_to_lab

# Written out here from the CIE / IEC 61966-2-1 definitions, independently of the module.
M = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
WHITE = np.array([0.95047, 1.0, 1.08883])
EPS = (6 / 29) ** 3


def lab_reference(rgb):
    """sRGB -> L*a*b* in float64, one colour at a time."""
    out = []
    for colour in np.asarray(rgb, np.float64).reshape(-1, 3):
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in colour]
        x, y, z = (M @ np.array(linear)) / WHITE
        f = [t ** (1 / 3) if t > EPS else t / (3 * (6 / 29) ** 2) + 4 / 29 for t in (x, y, z)]
        out.append([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])
    return np.array(out).reshape(np.shape(rgb))


def _uint8_grid(step):
    levels = np.arange(0, 256, step)
    return np.array(list(itertools.product(levels, repeat=3)), np.float32) / 255


@pytest.mark.parametrize(
    "rgb, expected",
    [
        ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),
        ((0.0, 1.0, 0.0), (87.73, -86.18, 83.18)),
        ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),
    ],
)
def test_published_constants(rgb, expected):
    got = jax.jit(rgb_to_lab)(jnp.array(rgb, jnp.float32))
    np.testing.assert_allclose(got, expected, atol=0.01)


def test_matches_numpy_reference():
    rng = np.random.default_rng(0)
    rgb = np.concatenate(
        [
            rng.uniform(size=(200, 3)),
            rng.uniform(0, 0.05, size=(50, 3)),  # around the linear segment of the companding
            _uint8_grid(51),
        ]
    ).astype(np.float32)
    got = jax.jit(rgb_to_lab)(rgb)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, lab_reference(rgb), atol=2e-3)


def test_float64_matches_reference_closely():
    rng = np.random.default_rng(1)
    rgb = rng.uniform(size=(4, 5, 3))
    with jax.enable_x64(True):
        got = rgb_to_lab(jnp.asarray(rgb))
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, lab_reference(rgb), atol=1e-9)
        back = lab_to_rgb(got)
        assert back.dtype == jnp.float64
        np.testing.assert_allclose(back, rgb, atol=1e-9)


def test_inverse_of_reference_lab():
    rng = np.random.default_rng(2)
    rgb = rng.uniform(size=(300, 3))
    got = jax.jit(lab_to_rgb)(lab_reference(rgb).astype(np.float32))
    np.testing.assert_allclose(got, rgb, atol=1e-4)


def test_round_trip_within_one_level():
    rng = np.random.default_rng(3)
    rgb = np.concatenate([_uint8_grid(15), rng.uniform(size=(2000, 3))]).astype(np.float32)
    back = jax.jit(lambda x: lab_to_rgb(rgb_to_lab(x)))(rgb)
    assert float(jnp.max(jnp.abs(back - rgb))) < 1 / 255


def test_any_leading_shape():
    rgb = np.random.default_rng(4).uniform(size=(2, 3, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(
        rgb_to_lab(rgb), rgb_to_lab(rgb.reshape(-1, 3)).reshape(rgb.shape), rtol=1e-6
    )


def test_out_of_gamut_lab_is_clipped():
    lab_values = jnp.array([[50.0, 127.0, -127.0], [100.0, 0.0, 110.0], [-5.0, 0.0, 0.0]])
    rgb = lab_to_rgb(lab_values)
    assert jnp.all((rgb >= 0) & (rgb <= 1))
    np.testing.assert_allclose(rgb[2], 0.0, atol=1e-6)


def test_gradients_finite_at_black_and_thresholds():
    rgb = jnp.array([[0.0, 0.0, 0.0], [0.04045, 1.0, 0.5], [1.0, 1.0, 1.0]])
    grad = jax.grad(lambda x: jnp.sum(rgb_to_lab(x)))(rgb)
    assert jnp.all(jnp.isfinite(grad))
    grad = jax.grad(lambda x: jnp.sum(lab_to_rgb(x)))(rgb_to_lab(rgb))
    assert jnp.all(jnp.isfinite(grad))


@pytest.mark.parametrize("fn", [rgb_to_lab, lab_to_rgb])
def test_input_errors(fn):
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        fn(jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="floating point"):
        fn(jnp.ones((4, 3), jnp.uint8))


def test_docstring_examples():
    failures, _ = doctest.testmod(lab, verbose=False)
    assert failures == 0
