"""ArraySource validation and the shared image helpers."""

import numpy as np
import pytest

from ssl_jax.data import ArraySource, DataError, Source, resize_images


def test_array_source_gray_is_repeated_to_rgb_and_labels_are_int32():
    images = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
    source = ArraySource(images, np.array([0, 1, 2, 1, 0], np.uint8))
    got_images, got_labels = source.get(np.array([3, 1]))
    assert got_images.shape == (2, 4, 4, 3) and got_images.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(got_images[..., c], images[[3, 1]])
    assert got_labels.dtype == np.int32
    np.testing.assert_array_equal(got_labels, [1, 1])
    assert source.num_classes == 3 and source.image_shape == (4, 4, 3) and len(source) == 5
    assert isinstance(source, Source)


@pytest.mark.parametrize(
    "images, labels, kwargs, expected",
    [
        (np.zeros((3, 4, 4, 3), np.float32), np.zeros(3, int), {}, "float32, expected uint8"),
        (np.zeros((3, 4, 4, 2), np.uint8), np.zeros(3, int), {}, "(3, 4, 4, 2)"),
        (np.zeros((3, 4), np.uint8), np.zeros(3, int), {}, "(3, 4)"),
        (np.zeros((3, 4, 4, 3), np.uint8), np.zeros(2, int), {}, "3 images"),
        (np.zeros((3, 4, 4, 3), np.uint8), np.zeros(3, float), {}, "expected an integer"),
        (np.zeros((3, 4, 4, 3), np.uint8), np.array([0, -1, 0]), {}, "found label -1"),
        (np.zeros((3, 4, 4, 3), np.uint8), np.array([0, 5, 0]), {"num_classes": 5}, "[0, 5)"),
        (np.zeros((0, 4, 4, 3), np.uint8), np.zeros(0, int), {}, "no images"),
    ],
)
def test_array_source_rejects_bad_arrays(images, labels, kwargs, expected):
    with pytest.raises(DataError) as info:
        ArraySource(images, labels, name="mydata", **kwargs)
    assert "mydata" in str(info.value)
    assert expected in str(info.value)


def test_resize_images_bilinear_shapes_and_constant_images():
    rgb = np.full((2, 8, 6, 3), 77, np.uint8)
    assert resize_images(rgb, 4).shape == (2, 4, 4, 3)
    assert resize_images(rgb, (16, 12)).shape == (2, 16, 12, 3)
    np.testing.assert_array_equal(resize_images(rgb, 5), 77)
    gray = np.zeros((3, 8, 8), np.uint8)
    assert resize_images(gray, 4).shape == (3, 4, 4)
    assert resize_images(gray[..., None], 4).shape == (3, 4, 4, 1)
    assert resize_images(rgb, (8, 6)) is rgb


def test_resize_images_interpolates_between_pixels():
    image = np.array([[[0, 200]]], np.uint8)  # 1x2, upsample to 1x4.
    out = resize_images(image, (1, 4))[0, 0]
    assert out[0] <= out[1] <= out[2] <= out[3]
    assert 0 < out[1] < 200 and 0 < out[2] < 200


def test_array_source_resizes_once_when_image_size_is_set():
    source = ArraySource(np.zeros((2, 8, 8, 3), np.uint8), np.zeros(2, int), image_size=16)
    assert source.image_shape == (16, 16, 3)
    assert source.get(np.array([0]))[0].shape == (1, 16, 16, 3)
