import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from PIL import Image

from ssl_jax.augment import geometric

crop = jax.jit(geometric.random_resized_crop, static_argnames=("size", "scale", "ratio"))
sample_boxes = jax.jit(
    jax.vmap(geometric._sample_crop_box, in_axes=(0, None, None, None, None)),
    static_argnums=(1, 2, 3, 4),
)
resize_box = jax.jit(geometric._resize_box, static_argnums=5)
center_crop_resize = jax.jit(
    geometric.center_crop_resize, static_argnames=("size", "crop_fraction")
)


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(0), (8, 16, 16, 3))


def pil_resize(image, size):
    """Reference: PIL's antialiased bilinear resize, per channel in float mode."""
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F").resize(
                (size, size), Image.BILINEAR
            )
        )
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1)


@pytest.mark.parametrize(
    "box, size",
    [((3, 5, 10, 12), 7), ((2, 1, 15, 9), 30)],
)
def test_resize_box_matches_pil_crop_then_resize(box, size):
    image = np.random.default_rng(0).random((20, 24, 3)).astype(np.float32)
    top, left, h, w = box
    out = resize_box(jnp.asarray(image), top, left, h, w, size)
    ref = pil_resize(image[top : top + h, left : left + w], size)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_random_resized_crop_shape_range_and_keys(images):
    a = crop(images, jax.random.key(1), size=12)
    assert a.shape == (8, 12, 12, 3) and a.dtype == jnp.float32
    assert float(a.min()) >= float(images.min()) - 1e-6
    assert float(a.max()) <= float(images.max()) + 1e-6
    np.testing.assert_array_equal(a, crop(images, jax.random.key(1), size=12))
    assert not np.allclose(a, crop(images, jax.random.key(2), size=12))


def test_random_resized_crop_per_example_keys_jit_vs_eager(images):
    """Jitted batch output i equals the eager single-image crop with the i-th split key."""
    key = jax.random.key(3)
    out = crop(images, key, size=12)
    one = functools.partial(
        geometric._random_resized_crop_one, size=12, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
    )
    i = 5
    np.testing.assert_allclose(out[i], one(images[i], jax.random.split(key, 8)[i]), atol=1e-6)


def test_random_resized_crop_full_box_is_identity(images):
    out = crop(images, jax.random.key(4), size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_allclose(out, images, atol=1e-6)


def test_random_resized_crop_non_square_input_larger_output():
    images = jax.random.uniform(jax.random.key(5), (2, 10, 14, 3))
    out = crop(images, jax.random.key(6), size=20)
    assert out.shape == (2, 20, 20, 3)


@pytest.mark.parametrize("scale", [(0.25, 0.5), (0.08, 1.0)])
def test_crop_boxes_respect_scale_and_ratio(scale):
    keys = jax.random.split(jax.random.key(7), 2000)
    top, left, h, w = (np.asarray(v) for v in sample_boxes(keys, 32, 32, scale, (3 / 4, 4 / 3)))
    assert np.all(top >= 0) and np.all(left >= 0)
    assert np.all(top + h <= 32) and np.all(left + w <= 32)
    area = h * w / 32**2
    slack = 0.06  # rounding h and w to integers on a 32-pixel image
    assert area.min() >= scale[0] - slack and area.max() <= scale[1] + slack
    assert scale[0] < area.mean() < scale[1]
    assert area.min() < scale[0] + 0.1 * (scale[1] - scale[0])
    aspect = w / h
    assert aspect.min() >= 3 / 4 - 0.1 and aspect.max() <= 4 / 3 + 0.15


def np_torchvision_box_sizes(rng, n, height, width, scale, ratio):
    """(h, w) of n boxes as torchvision's `RandomResizedCrop.get_params`: for 10 attempts, area
    fraction ~ U(scale), log(w / h) ~ U(log ratio); the first box that fits, else the whole
    image clamped to the ratio range."""
    target = height * width * rng.uniform(scale[0], scale[1], (n, 10))
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), (n, 10)))
    w = np.round(np.sqrt(target * aspect))
    h = np.round(np.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = np.argmax(fits, axis=1)
    if width / height < ratio[0]:
        fallback = (round(width / ratio[0]), width)
    elif width / height > ratio[1]:
        fallback = (height, round(height * ratio[1]))
    else:
        fallback = (height, width)
    rows, found = np.arange(n), fits.any(axis=1)
    h = np.where(found, h[rows, first], fallback[0])
    return h, np.where(found, w[rows, first], fallback[1])


def read_back_boxes(n, side, key, scale, ratio):
    """Crops an image whose channels 0 and 1 hold each pixel's row and column centre / side, to
    `side` pixels (never shrinking). Bilinear upsampling of a linear ramp is exact inside the box
    and constant (the edge pixel) beyond its edge pixel centres, so the output's min and max of
    channel 0 are top + 0.5 and top + h - 0.5 (likewise for columns)."""
    centres = (np.arange(side) + 0.5) / side
    image = np.stack(np.broadcast_arrays(centres[:, None], centres[None, :], 0.0), axis=-1)
    images = jnp.broadcast_to(jnp.asarray(image, jnp.float32), (n, side, side, 3))
    out = np.asarray(crop(images, key, size=side, scale=scale, ratio=ratio), np.float64) * side
    low, high = out.min(axis=(1, 2)), out.max(axis=(1, 2))
    start, length = low[:, :2] - 0.5, high[:, :2] - low[:, :2] + 1
    for v in (start, length):
        np.testing.assert_allclose(v, np.round(v), atol=1e-3, err_msg="box edges not integers")
    (top, left), (h, w) = np.round(start).T.astype(int), np.round(length).T.astype(int)
    return top, left, h, w


@pytest.mark.parametrize(
    ("scale", "ratio"),
    [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.2, 0.6), (0.5, 1.0))],
    ids=["default", "tall"],
)
def test_crop_box_distribution_matches_torchvision(scale, ratio):
    """Boxes read back from crops vs the documented sampling, simulated in NumPy."""
    n, side = 3000, 32
    top, left, h, w = read_back_boxes(n, side, jax.random.key(20), scale, ratio)
    assert np.all((top >= 0) & (left >= 0) & (top + h <= side) & (left + w <= side))
    ref_h, ref_w = np_torchvision_box_sizes(
        np.random.default_rng(0), 200_000, side, side, scale, ratio
    )
    for name, got, expected in [
        ("log aspect ratio log(w / h)", np.log(w / h), np.log(ref_w / ref_h)),
        ("area h * w", h * w, ref_h * ref_w),
    ]:
        ks = scipy.stats.ks_2samp(got, expected)
        assert ks.pvalue > 0.01, f"{name}: KS D={ks.statistic:.4f}, p={ks.pvalue:.2g}"
    # Offsets uniform over the side - h + 1 positions: (offset + U(0, 1)) / count ~ U(0, 1).
    jitter = np.random.default_rng(1).random((2, n))
    for name, offset, count, v in [
        ("top", top, side - h + 1, jitter[0]),
        ("left", left, side - w + 1, jitter[1]),
    ]:
        ks = scipy.stats.kstest((offset + v) / count, "uniform")
        assert ks.pvalue > 0.01, f"{name} not uniform: KS D={ks.statistic:.4f}, p={ks.pvalue:.2g}"


def test_crop_box_falls_back_to_center_crop():
    # Aspect ratio 2..3 with the whole area cannot fit a square image: torchvision's fallback
    # is the full width and height round(width / 2), centred.
    keys = jax.random.split(jax.random.key(8), 5)
    top, left, h, w = (np.asarray(v) for v in sample_boxes(keys, 20, 20, (1.0, 1.0), (2.0, 3.0)))
    np.testing.assert_array_equal(top, 5)
    np.testing.assert_array_equal(left, 0)
    np.testing.assert_array_equal(h, 10)
    np.testing.assert_array_equal(w, 20)


def test_horizontal_flip(images):
    key = jax.random.key(9)
    flip = geometric.random_horizontal_flip
    np.testing.assert_array_equal(flip(images, key, prob=1.0), images[:, :, ::-1])
    np.testing.assert_array_equal(flip(images, key, prob=0.0), images)
    out = flip(images, key, prob=0.5)
    np.testing.assert_array_equal(jax.jit(functools.partial(flip, prob=0.5))(images, key), out)
    for i, k in enumerate(jax.random.split(key, images.shape[0])):
        expected = geometric._random_horizontal_flip_one(images[i], k, prob=0.5)
        np.testing.assert_array_equal(out[i], expected)


def test_horizontal_flip_prob_fraction_and_keys():
    images = jax.random.uniform(jax.random.key(10), (500, 2, 2, 3))
    fn = jax.jit(functools.partial(geometric.random_horizontal_flip, prob=0.3))
    out = fn(images, jax.random.key(11))
    assert not np.array_equal(out, fn(images, jax.random.key(12)))
    flipped = np.all(np.asarray(out) == np.asarray(images)[:, :, ::-1], axis=(1, 2, 3))
    assert abs(flipped.mean() - 0.3) < 0.06


def test_center_crop_resize_square(images):
    np.testing.assert_allclose(center_crop_resize(images, size=16), images, atol=1e-6)
    out = center_crop_resize(images, size=6)
    for i in range(2):
        np.testing.assert_allclose(out[i], pil_resize(np.asarray(images[i]), 6), atol=1e-5)


def test_center_crop_resize_non_square_and_fraction():
    images = np.random.default_rng(1).random((2, 12, 20, 3)).astype(np.float32)
    out = center_crop_resize(images, size=8)
    np.testing.assert_allclose(out[1], pil_resize(images[1, :, 4:16], 8), atol=1e-5)
    out = center_crop_resize(images, size=8, crop_fraction=0.5)
    np.testing.assert_allclose(out[0], pil_resize(images[0, 3:9, 7:13], 8), atol=1e-5)


@pytest.mark.parametrize(
    "call",
    [
        lambda x, k: geometric.random_resized_crop(x, k, size=0),
        lambda x, k: geometric.random_resized_crop(x, k, size=8.5),
        lambda x, k: geometric.random_resized_crop(x, k, size=8, scale=(0.5, 0.2)),
        lambda x, k: geometric.random_resized_crop(x, k, size=8, scale=(0.0, 1.0)),
        lambda x, k: geometric.random_resized_crop(x, k, size=8, scale=(0.5, 1.5)),
        lambda x, k: geometric.random_resized_crop(x, k, size=8, ratio=(2.0, 1.0)),
        lambda x, k: geometric.random_resized_crop(x[0], k, size=8),
        lambda x, k: geometric.random_horizontal_flip(x, k, prob=2.0),
        lambda x, k: geometric.random_horizontal_flip(x[..., :1], k),
        lambda x, k: geometric.center_crop_resize(x, size=-1),
        lambda x, k: geometric.center_crop_resize(x, size=8, crop_fraction=0.0),
    ],
)
def test_bad_arguments_raise(images, call):
    with pytest.raises(ValueError):
        call(images, jax.random.key(0))
