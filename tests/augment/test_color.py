import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.augment import color

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
JITTER = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(0), (8, 16, 16, 3))


def np_gray(x):
    g = np.asarray(x) @ LUMA
    return np.repeat(g[..., None], 3, axis=-1)


def np_hue(x, delta):
    flat = np.asarray(x, np.float64).reshape(-1, 3)
    out = []
    for r, g, b in flat:
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        out.append(colorsys.hsv_to_rgb((h + delta) % 1.0, s, v))
    return np.clip(np.array(out).reshape(np.shape(x)), 0, 1)


def np_brightness(x, f):
    return np.clip(np.asarray(x) * f, 0, 1)


def np_contrast(x, f):
    mean = np_gray(x)[..., 0].mean()
    return np.clip(f * np.asarray(x) + (1 - f) * mean, 0, 1)


def np_saturation(x, f):
    return np.clip(f * np.asarray(x) + (1 - f) * np_gray(x), 0, 1)


PIXELS = np.array(
    [
        [0.0, 0.0, 0.0],
        [1.0, 1.0, 1.0],
        [0.5, 0.5, 0.5],
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        [0.2, 0.7, 0.4],
        [0.9, 0.1, 0.6],
        [0.3, 0.3, 0.8],
        [0.8, 0.8, 0.1],
    ],
    np.float32,
)


def test_rgb_to_hsv_matches_colorsys():
    ref = np.array([colorsys.rgb_to_hsv(*p) for p in PIXELS.astype(np.float64)])
    np.testing.assert_allclose(color.rgb_to_hsv(PIXELS), ref, atol=1e-6)


def test_hsv_to_rgb_matches_colorsys():
    hsv = np.random.default_rng(0).random((50, 3)).astype(np.float32)
    ref = np.array([colorsys.hsv_to_rgb(*p) for p in hsv.astype(np.float64)])
    np.testing.assert_allclose(color.hsv_to_rgb(hsv), ref, atol=1e-6)


def test_hsv_round_trip(images):
    np.testing.assert_allclose(color.hsv_to_rgb(color.rgb_to_hsv(images)), images, atol=1e-5)


def test_adjust_hue_zero_is_identity(images):
    np.testing.assert_allclose(color.adjust_hue(images, 0.0), images, atol=1e-5)


@pytest.mark.parametrize("delta", [0.1, -0.3, 0.5])
def test_adjust_hue_matches_colorsys(delta):
    out = color.adjust_hue(PIXELS[None, None], delta)[0, 0]
    np.testing.assert_allclose(out, np_hue(PIXELS, delta), atol=1e-5)


def test_adjust_hue_third_turn_maps_red_to_green():
    red = np.array([[[1.0, 0.0, 0.0]]], np.float32)
    np.testing.assert_allclose(color.adjust_hue(red, 1 / 3), [[[0.0, 1.0, 0.0]]], atol=1e-5)


def test_to_grayscale_matches_luma(images):
    out = color.to_grayscale(images)
    assert out.shape == images.shape
    np.testing.assert_allclose(out, np_gray(images), atol=1e-6)


@pytest.mark.parametrize("factor", [0.0, 0.5, 1.7])
def test_adjust_brightness_matches_numpy(images, factor):
    np.testing.assert_allclose(
        color.adjust_brightness(images, factor), np_brightness(images, factor), atol=1e-6
    )


@pytest.mark.parametrize("factor", [0.0, 0.5, 1.7])
def test_adjust_contrast_matches_numpy_per_image(images, factor):
    out = color.adjust_contrast(images, factor)
    for i in range(images.shape[0]):
        np.testing.assert_allclose(out[i], np_contrast(images[i], factor), atol=1e-6)
        np.testing.assert_allclose(color.adjust_contrast(images[i], factor), out[i], atol=1e-6)


@pytest.mark.parametrize("factor", [0.0, 0.5, 1.7])
def test_adjust_saturation_matches_numpy(images, factor):
    np.testing.assert_allclose(
        color.adjust_saturation(images, factor), np_saturation(images, factor), atol=1e-6
    )


jitter = jax.jit(
    color.color_jitter, static_argnames=("brightness", "contrast", "saturation", "hue", "prob")
)


def test_color_jitter_key_determinism(images):
    a = jitter(images, jax.random.key(1), **JITTER, prob=1.0)
    np.testing.assert_array_equal(a, jitter(images, jax.random.key(1), **JITTER, prob=1.0))
    b = jitter(images, jax.random.key(2), **JITTER, prob=1.0)
    assert a.shape == images.shape and a.dtype == jnp.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert not np.allclose(a, b)


def test_color_jitter_matches_numpy_reference_with_per_example_keys(images):
    """Rebuilds example i from split(key)[i]: its 9 uniforms give apply, factors, op order."""
    key = jax.random.key(4)
    out = jitter(images, key, **JITTER, prob=1.0)
    ops = [np_brightness, np_contrast, np_saturation, np_hue]
    strengths = [JITTER["brightness"], JITTER["contrast"], JITTER["saturation"]]
    orders = set()
    for i, k in enumerate(jax.random.split(key, images.shape[0])):
        u = np.asarray(jax.random.uniform(k, (9,)))
        params = [1 - st + 2 * st * d for st, d in zip(strengths, u[1:4], strict=True)]
        params.append(0.1 * (2 * u[4] - 1))
        order = list(np.argsort(u[5:9]))
        orders.add(tuple(order))
        ref = np.asarray(images[i], np.float64)
        for j in order:
            ref = ops[j](ref, params[j])
        np.testing.assert_allclose(out[i], ref, atol=1e-5)
    assert len(orders) > 1


def test_color_jitter_examples_are_independent(images):
    key = jax.random.key(5)
    out = jitter(images, key, **JITTER, prob=1.0)
    other = images.at[3:].set(1.0 - images[3:])
    np.testing.assert_array_equal(jitter(other, key, **JITTER, prob=1.0)[:3], out[:3])


def test_color_jitter_prob_fraction(images):
    changed = []
    for seed in range(50):
        out = jitter(images, jax.random.key(seed), **JITTER, prob=0.8)
        changed.append(np.any(np.abs(np.asarray(out - images)) > 1e-6, axis=(1, 2, 3)))
    assert abs(np.mean(changed) - 0.8) < 0.07


def test_color_jitter_brightness_only_factor_range():
    images = jnp.full((200, 2, 2, 3), 0.5)
    out = jitter(
        images, jax.random.key(9), brightness=0.4, contrast=0, saturation=0, hue=0, prob=1.0
    )
    factors = np.asarray(out[:, 0, 0, 0]) / 0.5
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6
    assert factors.min() < 0.7 and factors.max() > 1.3
    np.testing.assert_allclose(out, factors[:, None, None, None] * 0.5 * np.ones((1, 2, 2, 3)))


def test_color_jitter_disabled_is_identity(images):
    key = jax.random.key(10)
    np.testing.assert_array_equal(color.color_jitter(images, key, **JITTER, prob=0.0), images)
    zero = dict(brightness=0, contrast=0, saturation=0, hue=0)
    np.testing.assert_array_equal(color.color_jitter(images, key, **zero, prob=1.0), images)


def test_random_grayscale(images):
    key = jax.random.key(11)
    np.testing.assert_allclose(
        color.random_grayscale(images, key, prob=1.0), np_gray(images), atol=1e-6
    )
    np.testing.assert_array_equal(color.random_grayscale(images, key, prob=0.0), images)
    out = color.random_grayscale(images, key, prob=0.5)
    jitted = jax.jit(functools.partial(color.random_grayscale, prob=0.5))(images, key)
    np.testing.assert_allclose(jitted, out, atol=1e-6)
    for i, k in enumerate(jax.random.split(key, images.shape[0])):
        np.testing.assert_array_equal(out[i], color._random_grayscale_one(images[i], k, prob=0.5))


def test_random_grayscale_prob_fraction():
    images = jax.random.uniform(jax.random.key(12), (500, 2, 2, 3))
    out = jax.jit(functools.partial(color.random_grayscale, prob=0.2))(images, jax.random.key(13))
    changed = np.any(np.asarray(out) != np.asarray(images), axis=(1, 2, 3))
    assert abs(changed.mean() - 0.2) < 0.06


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_solarize_matches_numpy(images, threshold):
    x = np.asarray(images)
    ref = np.where(x >= threshold, 1 - x, x)
    out = color.solarize(images, jax.random.key(14), prob=1.0, threshold=threshold)
    np.testing.assert_allclose(out, ref, atol=1e-7)


def test_solarize_prob_and_keys():
    images = jax.random.uniform(jax.random.key(15), (500, 2, 2, 3))
    fn = jax.jit(functools.partial(color.solarize, prob=0.2))
    out = fn(images, jax.random.key(16))
    np.testing.assert_array_equal(out, fn(images, jax.random.key(16)))
    assert not np.array_equal(out, fn(images, jax.random.key(17)))
    changed = np.any(np.asarray(out) != np.asarray(images), axis=(1, 2, 3))
    assert abs(changed.mean() - 0.2) < 0.06
    np.testing.assert_array_equal(color.solarize(images, jax.random.key(16), prob=0.0), images)


@pytest.mark.parametrize(
    "call",
    [
        lambda x, k: color.color_jitter(x, k, **JITTER, prob=1.5),
        lambda x, k: color.color_jitter(x, k, **{**JITTER, "brightness": -0.1}),
        lambda x, k: color.color_jitter(x, k, **{**JITTER, "hue": 0.6}),
        lambda x, k: color.random_grayscale(x, k, prob=-0.1),
        lambda x, k: color.solarize(x, k, prob=0.5, threshold=1.5),
        lambda x, k: color.solarize(x[0], k, prob=0.5),
        lambda x, k: color.solarize(x[..., :2], k, prob=0.5),
        lambda x, k: color.solarize((x * 255).astype(jnp.uint8), k, prob=0.5),
        lambda x, k: color.adjust_hue(x, 0.7),
        lambda x, k: color.adjust_saturation(x, -1.0),
        lambda x, k: color.to_grayscale(x[0, 0]),
    ],
)
def test_bad_arguments_raise(images, call):
    with pytest.raises(ValueError):
        call(images, jax.random.key(0))
