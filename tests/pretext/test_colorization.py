import doctest
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.pretext import colorization
from ssl_jax.pretext.colorization import (
    ab_gamut_bins,
    annealed_mean,
    colorization_inputs,
    colorize,
    empirical_ab_prior,
    quantize_ab,
    rebalance_weights,
    soft_encode_ab,
)
from tests.pretext.test_lab import lab_reference


@pytest.fixture(scope="module")
def bins():
    return ab_gamut_bins()


def _random_ab(seed, shape):
    """ab values of random sRGB colours, computed with the float64 reference."""
    rgb = np.random.default_rng(seed).uniform(size=(*shape, 3))
    return lab_reference(rgb)[..., 1:]


def _squared_distances(ab, bins):
    return np.sum((np.asarray(ab, np.float64)[..., None, :] - bins.astype(np.float64)) ** 2, -1)


# ab_gamut_bins


def test_gamut_bins_are_grid_centres(bins):
    assert bins.shape == (261, 2)
    assert bins.dtype == np.float32
    np.testing.assert_array_equal(bins % 10, 0)
    assert np.all(np.abs(bins) <= 110)
    assert len({tuple(b) for b in bins}) == len(bins)
    assert [tuple(b) for b in bins] == sorted(tuple(b) for b in bins)
    np.testing.assert_array_equal(bins.min(0), [-90, -110])
    np.testing.assert_array_equal(bins.max(0), [100, 90])


def test_gamut_bins_cached_and_read_only(bins):
    assert ab_gamut_bins(10, 110) is bins
    with pytest.raises(ValueError, match="read-only"):
        bins[0, 0] = 1.0


def _nearest_distance(ab, bins):
    return np.concatenate(
        [np.sqrt(_squared_distances(c, bins).min(-1)) for c in np.array_split(ab, 20)]
    )


def test_every_srgb_colour_is_near_a_bin(bins):
    levels = np.arange(0, 256, 5) / 255
    grid = np.array(list(itertools.product(levels, repeat=3)))
    ab = np.concatenate([lab_reference(grid[::7])[:, 1:], _random_ab(0, (3000,))])
    assert _nearest_distance(ab, bins).max() <= 10 / np.sqrt(2) + 1e-3


def test_bins_are_the_cells_hit_by_srgb_colours(bins):
    # The extreme chromas lie on the faces of the RGB cube (a channel at 0 or 255): a fine sample
    # of the faces and a coarse one of the interior hit exactly the same cells as all 256^3.
    levels = np.arange(0, 256, 3) / 255
    faces = [
        np.array([(v, x, y) for x, y in itertools.product(levels, repeat=2)])[:, perm]
        for v in (0.0, 1.0)
        for perm in ([0, 1, 2], [1, 0, 2], [1, 2, 0])
    ]
    coarse = np.array(list(itertools.product(np.arange(0, 256, 17) / 255, repeat=3)))
    ab = np.concatenate([lab_reference(c)[:, 1:] for c in (*faces, coarse)])
    cells = {tuple(c) for c in np.floor(ab / 10 + 0.5).astype(int) * 10}
    assert cells == {tuple(b) for b in bins.astype(int)}


def test_gamut_bins_other_grid():
    coarse = ab_gamut_bins(grid=20, extent=100)
    np.testing.assert_array_equal(coarse % 20, 0)
    assert 50 < len(coarse) < 261
    assert np.all(np.abs(coarse) <= 100)


@pytest.mark.parametrize("kwargs", [{"grid": 0}, {"grid": -5}, {"extent": -1}])
def test_gamut_bins_errors(kwargs):
    with pytest.raises(ValueError, match="must be a number"):
        ab_gamut_bins(**kwargs)


# quantize_ab and soft_encode_ab


def soft_encode_reference(ab, bins, neighbors, sigma):
    ab = np.asarray(ab, np.float64).reshape(-1, 2)
    out = np.zeros((len(ab), len(bins)))
    for row, y in zip(out, ab, strict=True):
        d2 = np.sum((bins.astype(np.float64) - y) ** 2, axis=-1)
        nearest = np.argsort(d2, kind="stable")[:neighbors]
        kernel = np.exp(-d2[nearest] / (2 * sigma**2))
        row[nearest] = kernel / kernel.sum()
    return out


def test_quantize_matches_numpy(bins):
    ab = _random_ab(1, (2, 3, 4)).astype(np.float32)
    got = jax.jit(quantize_ab)(ab, bins)
    assert got.shape == (2, 3, 4) and got.dtype == jnp.int32
    np.testing.assert_array_equal(got, np.argmin(_squared_distances(ab, bins), -1))


def test_quantize_ties_go_to_lower_index():
    bins = np.array([[0.0, 0.0], [10.0, 0.0]], np.float32)
    assert int(quantize_ab(jnp.array([5.0, 0.0]), bins)) == 0


@pytest.mark.parametrize("neighbors, sigma", [(5, 5.0), (1, 5.0), (3, 2.0), (8, 10.0)])
def test_soft_encode_matches_numpy(bins, neighbors, sigma):
    ab = _random_ab(2, (2, 3, 5)).astype(np.float32)
    fn = jax.jit(lambda a: soft_encode_ab(a, bins, neighbors=neighbors, sigma=sigma))
    got = fn(ab)
    assert got.shape == (2, 3, 5, len(bins))
    want = soft_encode_reference(ab, bins, neighbors, sigma).reshape(got.shape)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_soft_encode_rows_and_argmax(bins):
    ab = np.concatenate([_random_ab(3, (400,)), bins[:40] + 5.0, bins[40:80]]).astype(np.float32)
    encoded, index = jax.jit(lambda a: (soft_encode_ab(a, bins), quantize_ab(a, bins)))(ab)
    encoded = np.asarray(encoded)
    np.testing.assert_allclose(encoded.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal((encoded > 0).sum(-1), 5)
    np.testing.assert_array_equal(encoded.argmax(-1), index)


def test_soft_encode_far_from_every_bin_is_finite(bins):
    encoded = jax.jit(soft_encode_ab)(np.array([[500.0, -400.0], [0.0, 0.0]], np.float32), bins)
    assert np.all(np.isfinite(encoded))
    np.testing.assert_allclose(np.sum(encoded, -1), 1.0, rtol=1e-6)


def test_soft_encode_single_ab():
    bins = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
    got = jax.jit(lambda a: soft_encode_ab(a, bins, neighbors=2, sigma=5.0))(
        np.zeros(2, np.float32)
    )
    e = np.exp(-100 / 50)
    np.testing.assert_allclose(got, [1 / (1 + e), e / (1 + e), 0.0], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"neighbors": 0}, "positive integer"),
        ({"neighbors": 2.0}, "positive integer"),
        ({"neighbors": 4}, "at most"),
        ({"neighbors": 2, "sigma": 0.0}, "sigma"),
    ],
)
def test_soft_encode_errors(kwargs, message):
    bins = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match=message):
        soft_encode_ab(jnp.zeros((2, 2)), bins, **kwargs)


def test_shape_errors(bins):
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        quantize_ab(jnp.zeros((4, 3)), bins)
    with pytest.raises(ValueError, match=r"\(Q, 2\)"):
        quantize_ab(jnp.zeros((4, 2)), jnp.zeros((4, 3)))


# empirical_ab_prior and rebalance_weights


def test_empirical_prior_matches_histogram(bins):
    ab = _random_ab(4, (3, 8, 8)).astype(np.float32)
    index = np.argmin(_squared_distances(ab, bins), -1)
    mask = np.random.default_rng(4).uniform(size=(3, 8, 8)) < 0.3
    prior, masked = jax.jit(
        lambda a, m: (empirical_ab_prior(a, bins), empirical_ab_prior(a, bins, where=m))
    )(ab, mask)
    np.testing.assert_allclose(prior, np.bincount(index.ravel(), minlength=len(bins)) / 192)
    want = np.bincount(index[mask], minlength=len(bins)) / mask.sum()
    np.testing.assert_allclose(masked, want, rtol=1e-6)
    with pytest.raises(ValueError, match="where"):
        empirical_ab_prior(ab, bins, where=mask[0])


def rebalance_reference(prior, bins, lam, sigma):
    """Zhang et al. eq. 4 with p smoothed by a normalised Gaussian convolution over the bins."""
    p = np.asarray(prior, np.float64) / np.sum(prior)
    c = bins.astype(np.float64)
    if sigma > 0:
        smoothed = np.zeros_like(p)
        for q in range(len(c)):
            g = np.exp(-np.sum((c - c[q]) ** 2, axis=-1) / (2 * sigma**2))
            smoothed[q] = np.sum(g * p) / np.sum(g)
        p = smoothed / smoothed.sum()
    w = 1.0 / ((1 - lam) * p + lam / len(p))
    return w / np.sum(p * w), p


@pytest.mark.parametrize("lam, sigma", [(0.5, 5.0), (0.1, 0.0), (0.9, 12.0)])
def test_rebalance_matches_numpy(bins, lam, sigma):
    ab = _random_ab(5, (4000,)).astype(np.float32)
    prior = empirical_ab_prior(ab, bins)
    got = jax.jit(lambda p: rebalance_weights(p, bins, lam=lam, sigma=sigma))(prior)
    want, smoothed = rebalance_reference(prior, bins, lam, sigma)
    np.testing.assert_allclose(got, want, rtol=2e-5)
    np.testing.assert_allclose(np.sum(smoothed * np.asarray(got, np.float64)), 1.0, rtol=1e-5)


def test_rebalance_uniform_prior_gives_ones(bins):
    got = rebalance_weights(jnp.full(len(bins), 1 / len(bins)), bins)
    np.testing.assert_allclose(got, 1.0, rtol=1e-5)


def test_rebalance_lambda_one_gives_ones(bins):
    prior = np.random.default_rng(6).uniform(size=len(bins))
    np.testing.assert_allclose(rebalance_weights(prior, bins, lam=1.0), 1.0, rtol=1e-5)


def test_rebalance_rarer_bins_weigh_more(bins):
    prior = np.random.default_rng(7).permutation(np.linspace(1.0, 100.0, len(bins)))
    weights = np.asarray(rebalance_weights(prior, bins, sigma=0.0))
    order = np.argsort(prior)
    assert np.all(np.diff(weights[order]) < 0)
    _, smoothed = rebalance_reference(prior, bins, 0.5, 5.0)
    weights = np.asarray(rebalance_weights(prior, bins))
    assert np.all(np.diff(weights[np.argsort(smoothed)]) < 0)


def test_rebalance_accepts_counts(bins):
    prior = np.random.default_rng(8).uniform(size=len(bins))
    np.testing.assert_allclose(
        rebalance_weights(500.0 * prior, bins), rebalance_weights(prior, bins), rtol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [({"lam": 0.0}, "lam"), ({"lam": 1.5}, "lam"), ({"sigma": -1.0}, "sigma")],
)
def test_rebalance_errors(bins, kwargs, message):
    with pytest.raises(ValueError, match=message):
        rebalance_weights(jnp.ones(len(bins)), bins, **kwargs)
    with pytest.raises(ValueError, match="one entry per bin"):
        rebalance_weights(jnp.ones(3), bins)


# annealed_mean


def annealed_mean_reference(probs, bins, temperature):
    probs = np.asarray(probs, np.float64)
    powered = probs ** (1 / temperature)
    f = powered / powered.sum(-1, keepdims=True)
    return f @ bins.astype(np.float64)


def _random_probs(seed, shape, q):
    logits = np.random.default_rng(seed).normal(size=(*shape, q)) * 2
    return jax.nn.softmax(jnp.asarray(logits, jnp.float32), -1)


@pytest.mark.parametrize("temperature", [1.0, 0.38, 0.2])
def test_annealed_mean_matches_numpy(bins, temperature):
    probs = _random_probs(9, (2, 3, 4), len(bins))
    got = jax.jit(lambda p: annealed_mean(p, bins, temperature=temperature))(probs)
    assert got.shape == (2, 3, 4, 2)
    np.testing.assert_allclose(
        got, annealed_mean_reference(probs, bins, temperature), rtol=1e-4, atol=1e-3
    )


def test_annealed_mean_temperature_one_is_mean(bins):
    probs = _random_probs(10, (5,), len(bins))
    got = jax.jit(lambda p: annealed_mean(p, bins, temperature=1.0))(probs)
    np.testing.assert_allclose(got, np.asarray(probs) @ bins, rtol=1e-4, atol=1e-3)


def test_annealed_mean_small_temperature_is_mode(bins):
    probs = _random_probs(11, (6,), len(bins))
    got = jax.jit(lambda p: annealed_mean(p, bins, temperature=1e-3))(probs)
    np.testing.assert_allclose(got, bins[np.argmax(probs, -1)], atol=1e-3)


def test_annealed_mean_with_zero_probabilities(bins):
    probs = np.asarray(soft_encode_ab(_random_ab(12, (7,)).astype(np.float32), bins))

    decode = lambda p, t: jnp.sum(annealed_mean(p, bins, temperature=t))
    value, grad = jax.jit(jax.value_and_grad(decode), static_argnums=1)(probs, 1e-4)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    got = jax.jit(lambda p: annealed_mean(p, bins, temperature=0.38))(probs)
    np.testing.assert_allclose(got, annealed_mean_reference(probs, bins, 0.38), atol=1e-3)


def test_annealed_mean_errors(bins):
    with pytest.raises(ValueError, match="temperature"):
        annealed_mean(jnp.ones(len(bins)) / len(bins), bins, temperature=0.0)
    with pytest.raises(ValueError, match="last axis of size Q"):
        annealed_mean(jnp.ones(5) / 5, bins)


# colorization_inputs and colorize


def test_colorization_inputs_match_reference():
    images = np.random.default_rng(13).uniform(size=(2, 3, 4, 3)).astype(np.float32)
    l_channel, ab = jax.jit(colorization_inputs)(images)
    assert l_channel.shape == (2, 3, 4, 1) and ab.shape == (2, 3, 4, 2)
    want = lab_reference(images)
    np.testing.assert_allclose(l_channel[..., 0], want[..., 0] - 50.0, atol=2e-3)
    np.testing.assert_allclose(ab, want[..., 1:], atol=2e-3)


def test_colorize_inverts_inputs():
    images = np.random.default_rng(14).uniform(size=(2, 4, 4, 3)).astype(np.float32)
    rgb = jax.jit(lambda x: colorize(*colorization_inputs(x)))(images)
    assert float(jnp.max(jnp.abs(rgb - images))) < 1 / 255


def test_colorize_upsamples_low_resolution_ab():
    images = np.full((1, 8, 8, 3), [0.8, 0.3, 0.2], np.float32)

    def low_resolution(x):
        l_channel, ab = colorization_inputs(x)
        return colorize(l_channel, ab[:, ::4, ::4])

    rgb = jax.jit(low_resolution)(images)
    assert rgb.shape == (1, 8, 8, 3)
    np.testing.assert_allclose(rgb, images, atol=1e-3)


def test_colorize_gray_ab_is_gray():
    images = np.random.default_rng(15).uniform(size=(1, 2, 2, 3)).astype(np.float32)
    rgb = jax.jit(lambda x: colorize(colorization_inputs(x)[0], jnp.zeros((1, 2, 2, 2))))(images)
    np.testing.assert_allclose(rgb[..., 0], rgb[..., 1], atol=1e-3)
    np.testing.assert_allclose(rgb[..., 1], rgb[..., 2], atol=1e-3)


def test_input_errors():
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        colorization_inputs(jnp.ones((4, 4, 3)))
    with pytest.raises(ValueError, match=r"\(N, H, W, 1\)"):
        colorize(jnp.ones((1, 4, 4)), jnp.ones((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="N=1"):
        colorize(jnp.ones((1, 4, 4, 1)), jnp.ones((2, 4, 4, 2)))


def test_pipeline_under_jit(bins):
    """Images to soft targets, weights and decoded pictures in one jitted function."""
    images = np.random.default_rng(16).uniform(size=(2, 4, 4, 3)).astype(np.float32)

    @jax.jit
    def pipeline(x):
        l_channel, ab = colorization_inputs(x)
        targets = soft_encode_ab(ab, bins)
        weights = rebalance_weights(empirical_ab_prior(ab, bins), bins)
        return colorize(l_channel, annealed_mean(targets, bins, temperature=1e-3)), weights

    rgb, weights = pipeline(images)
    assert rgb.shape == images.shape and weights.shape == (len(bins),)
    # Decoding the mode of the targets gives the picture with ab quantised to the bins.
    assert float(jnp.mean(jnp.abs(rgb - images))) < 0.05


def test_docstring_examples():
    failures, _ = doctest.testmod(colorization, verbose=False)
    assert failures == 0
