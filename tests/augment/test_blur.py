import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.stats

from ssl_jax.augment import blur

blur_jit = jax.jit(blur.gaussian_blur, static_argnames=("prob", "sigma", "kernel_size"))


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(0), (8, 16, 16, 3))


def np_blur(image, sigma, kernel_size):
    """Separable Gaussian correlation with NumPy reflect padding (torchvision's `reflect`)."""
    r = kernel_size // 2
    t = np.arange(-r, r + 1)
    k = np.exp(-(t**2) / (2 * sigma**2))
    k /= k.sum()
    out = np.asarray(image, np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="reflect")
        n = out.shape[axis]
        out = sum(k[i] * np.take(padded, np.arange(i, i + n), axis=axis) for i in range(len(k)))
    return out


@pytest.mark.parametrize("sigma, size", [(0.5, 3), (1.3, 7), (2.0, 23)])
def test_gaussian_kernel(sigma, size):
    k = np.asarray(blur.gaussian_kernel(sigma, kernel_size=size))
    assert k.shape == (size,)
    np.testing.assert_allclose(k.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(k, k[::-1], rtol=1e-6)
    t = np.arange(size) - size // 2
    ref = np.exp(-(t**2) / (2 * sigma**2))
    np.testing.assert_allclose(k, ref / ref.sum(), rtol=1e-5)


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_blur_matches_numpy_reference(images, kernel_size):
    out = blur_jit(images, jax.random.key(1), prob=1.0, sigma=(1.2, 1.2), kernel_size=kernel_size)
    for i in (0, 7):
        np.testing.assert_allclose(out[i], np_blur(images[i], 1.2, kernel_size), atol=1e-5)


@pytest.mark.parametrize("sigma", [0.7, 1.9])
def test_default_kernel_blur_matches_scipy(sigma):
    # Non-square 40 x 64 images: documented kernel 2 * (min(H, W) // 20) + 1 = 5 (radius 2),
    # NumPy's "reflect" padding (d c b | a b c d), which is scipy.ndimage's mode "mirror".
    images = np.random.default_rng(0).random((2, 40, 64, 3)).astype(np.float32)
    out = blur.gaussian_blur(images, jax.random.key(1), prob=1.0, sigma=(sigma, sigma))
    ref = scipy.ndimage.gaussian_filter(
        images.astype(np.float64), sigma, radius=2, mode="mirror", axes=(1, 2)
    )
    np.testing.assert_allclose(out, ref, atol=1e-5, err_msg=f"sigma {sigma}, 5-tap kernel")


def test_sampled_sigma_is_uniform_on_simclr_default_interval():
    # The blur of a unit impulse at (2, 2) is k_i k_j, so out[2, 2] / out[2, 3] = k_0 / k_1 =
    # exp(1 / (2 sigma^2)) reads back each image's sigma. Default sigma: SimCLR's U(0.1, 2.0).
    n = 4000
    images = np.zeros((n, 5, 5, 3), np.float32)
    images[:, 2, 2] = 1.0
    out = np.asarray(blur_jit(images, jax.random.key(10), prob=0.5), np.float64)
    blurred = out[:, 2, 3, 0] > 0
    assert np.all(blurred == np.any(out != images, axis=(1, 2, 3)))
    assert abs(blurred.mean() - 0.5) < 0.03, blurred.mean()
    ratio = out[blurred, 2, 2, 0] / out[blurred, 2, 3, 0]
    sigmas = np.sqrt(0.5 / np.log(ratio))
    assert 0.1 - 1e-4 < sigmas.min() and sigmas.max() < 2.0 + 1e-4, (sigmas.min(), sigmas.max())
    # prob 0.5: reusing the draw that decides to blur would leave sigma in (0.1, 1.05) here.
    ks = scipy.stats.kstest(sigmas, scipy.stats.uniform(loc=0.1, scale=1.9).cdf)
    assert ks.pvalue > 0.01, f"sigma not U(0.1, 2.0): KS D={ks.statistic:.4f}, p={ks.pvalue:.2g}"


def test_default_kernel_size_is_tenth_of_side_and_odd():
    key = jax.random.key(2)
    small = jax.random.uniform(jax.random.key(3), (2, 16, 16, 3))
    np.testing.assert_array_equal(
        blur_jit(small, key, prob=1.0), blur_jit(small, key, prob=1.0, kernel_size=3)
    )
    large = jax.random.uniform(jax.random.key(4), (2, 64, 64, 3))
    default = blur_jit(large, key, prob=1.0, sigma=(2.0, 2.0))
    np.testing.assert_array_equal(
        default, blur_jit(large, key, prob=1.0, sigma=(2.0, 2.0), kernel_size=7)
    )
    assert not np.allclose(default, blur_jit(large, key, prob=1.0, sigma=(2.0, 2.0), kernel_size=3))


def test_blur_of_constant_image_is_constant():
    images = jnp.full((4, 16, 16, 3), 0.3)
    out = blur_jit(images, jax.random.key(5), prob=1.0, kernel_size=9)
    np.testing.assert_allclose(out, images, atol=1e-6)


def test_blur_keys_range_and_smoothing(images):
    a = blur_jit(images, jax.random.key(6), prob=1.0)
    assert a.shape == images.shape and a.dtype == jnp.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    np.testing.assert_array_equal(a, blur_jit(images, jax.random.key(6), prob=1.0))
    assert not np.allclose(a, blur_jit(images, jax.random.key(7), prob=1.0))
    assert float(jnp.std(a)) < float(jnp.std(images))


def test_blur_per_example_keys_and_eager(images):
    key = jax.random.key(8)
    out = blur_jit(images, key, prob=0.5)
    np.testing.assert_allclose(blur.gaussian_blur(images, key, prob=0.5), out, atol=1e-6)
    one = functools.partial(blur._gaussian_blur_one, prob=0.5, sigma=(0.1, 2.0), kernel_size=3)
    keys = jax.random.split(key, images.shape[0])
    for i in (0, 3):
        np.testing.assert_allclose(out[i], one(images[i], keys[i]), atol=1e-6)


def test_blur_prob(images):
    np.testing.assert_array_equal(blur_jit(images, jax.random.key(9), prob=0.0), images)
    changed = []
    for seed in range(40):
        out = blur_jit(images, jax.random.key(seed), prob=0.3, sigma=(1.0, 2.0))
        changed.append(np.any(np.asarray(out) != np.asarray(images), axis=(1, 2, 3)))
    assert abs(np.mean(changed) - 0.3) < 0.08


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(prob=1.5),
        dict(prob=0.5, sigma=(0.0, 1.0)),
        dict(prob=0.5, sigma=(2.0, 1.0)),
        dict(prob=0.5, kernel_size=4),
        dict(prob=0.5, kernel_size=0),
        dict(prob=0.5, kernel_size=33),
    ],
)
def test_bad_arguments_raise(images, kwargs):
    with pytest.raises(ValueError):
        blur.gaussian_blur(images, jax.random.key(0), **kwargs)


def test_bad_kernel_size_in_gaussian_kernel_raises():
    with pytest.raises(ValueError):
        blur.gaussian_kernel(1.0, kernel_size=6)
