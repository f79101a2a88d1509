import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.pretext import rotation
from ssl_jax.pretext.rotation import rotate, rotate_batch


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(0), (3, 6, 6, 3))


def test_rotate_batch_matches_np_rot90(images):
    x, labels = rotate_batch(images)
    assert x.shape == (12, 6, 6, 3) and x.dtype == images.dtype
    assert labels.shape == (12,) and labels.dtype == jnp.int32
    np.testing.assert_array_equal(labels, np.tile(np.arange(4), 3))
    for i in range(3):
        for k in range(4):
            np.testing.assert_array_equal(x[4 * i + k], np.rot90(np.asarray(images[i]), k))


def test_rotate_batch_rotating_back_recovers_input(images):
    x, labels = rotate_batch(images)
    back = rotate(x, -labels)
    np.testing.assert_array_equal(back, jnp.repeat(images, 4, axis=0))


def test_quarter_turn_is_counter_clockwise():
    image = np.zeros((1, 3, 3, 3), np.float32)
    image[0, 0, 2] = 1.0  # top-right corner
    x, _ = rotate_batch(image)
    assert x[1, 0, 0, 0] == 1.0  # a quarter turn counter-clockwise moves it to the top-left
    assert x[2, 2, 0, 0] == 1.0 and x[3, 2, 2, 0] == 1.0


def test_rotate_per_example_matches_np_rot90(images):
    k = jnp.array([1, -1, 6], jnp.int32)
    out = rotate(images, k)
    for i in range(3):
        np.testing.assert_array_equal(out[i], np.rot90(np.asarray(images[i]), int(k[i])))
    np.testing.assert_array_equal(rotate(out, 4 - k % 4), images)


def test_jit(images):
    x, labels = jax.jit(rotate_batch)(images)
    eager_x, eager_labels = rotate_batch(images)
    np.testing.assert_array_equal(x, eager_x)
    np.testing.assert_array_equal(labels, eager_labels)
    k = jax.random.randint(jax.random.key(1), (3,), 0, 4)
    out = jax.jit(rotate)(images, k)
    np.testing.assert_array_equal(out, rotate(images, k))
    for i in range(3):
        np.testing.assert_array_equal(out[i], np.rot90(np.asarray(images[i]), int(k[i])))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: rotate_batch(x[:, :5]), "square"),
        (lambda x: rotate(x[:, :, :4], jnp.zeros(3, jnp.int32)), "square"),
        (lambda x: rotate_batch(x[0]), "NHWC"),
        (lambda x: rotate_batch((x * 255).astype(jnp.uint8)), "floating"),
        (lambda x: rotate(x, jnp.zeros(2, jnp.int32)), "shape"),
        (lambda x: rotate(x, jnp.zeros(3)), "integer"),
    ],
)
def test_bad_arguments_raise(images, call, match):
    with pytest.raises(ValueError, match=match):
        call(images)


def test_docstring_examples():
    failures, _ = doctest.testmod(rotation, verbose=False)
    assert failures == 0
