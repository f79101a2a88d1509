"""``preprocess``: uint8 images -> the backbone's input in the spec's colour space."""

import numpy as np

from ssl_jax.augment import eval_view
from ssl_jax.export import make_input_spec, preprocess


def test_preprocess_converts_to_the_spec_colour_space():
    # sRGB gray 128, red, green, blue, white: CIE L* 53.59, 53.24, 87.73, 32.30, 100.
    pixels = np.array([[128, 128, 128], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255] * 3])
    images = np.broadcast_to(pixels[:, None, None], (5, 4, 4, 3)).astype(np.uint8)
    lab = make_input_spec(size=4, mean=(0.0,), std=(0.01,), color_space="lab_l")
    lightness = np.asarray(preprocess(images, lab))
    assert lightness.shape == (5, 4, 4, 1)
    np.testing.assert_allclose(
        lightness[:, 0, 0, 0], [53.59, 53.24, 87.73, 32.30, 100.0], atol=0.01
    )
    gray = make_input_spec(size=2, mean=(0.0,) * 3, std=(1.0,) * 3, color_space="gray")
    luma = np.asarray(preprocess(images, gray))
    assert luma.shape == (5, 2, 2, 3)
    np.testing.assert_allclose(luma[1, 0, 0], [0.299] * 3, rtol=1e-5)
    rgb = make_input_spec(size=4, mean=(0.5,) * 3, std=(0.25,) * 3)
    np.testing.assert_array_equal(
        preprocess(images, rgb), eval_view(images, size=4, mean=(0.5,) * 3, std=(0.25,) * 3)
    )
