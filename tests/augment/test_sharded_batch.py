"""Every augmentation and view function on a batch split over 8 devices, under Explicit and Auto
mesh axes, jitted: the values of one device.

Each batch op ``vmap``s over images and per-example keys; on Explicit axes the keys must be
split as the images are (:func:`ssl_jax.augment._batch.map_examples`), or ``vmap`` refuses.
"""

import functools

import jax
import numpy as np
import pytest

from ssl_jax import augment
from tests.augment.cases import FLOAT_CASES, NOT_IMAGE_FUNCTIONS, VIEW_CASES
from tests.meshes import MESH_KINDS, run_sharded

CASES = {**FLOAT_CASES, **VIEW_CASES}
_rng = np.random.default_rng(0)
IMAGES_UINT8 = _rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)  # 2 per device
IMAGES = IMAGES_UINT8.astype(np.float32) / 255
TARGETS = augment.one_hot_targets(np.arange(16) % 4, 4, label_smoothing=0.1)
KEY = jax.random.key(0)


def test_every_image_function_is_covered():
    assert set(CASES) - {"make_multicrop_fn"} | NOT_IMAGE_FUNCTIONS == set(augment.__all__)


def arguments(name):
    return (IMAGES_UINT8 if name in VIEW_CASES else IMAGES, KEY, TARGETS)


@functools.cache
def one_device(name):
    return jax.tree.map(np.asarray, jax.jit(CASES[name])(*arguments(name)))


@pytest.mark.parametrize("kind", MESH_KINDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_sharded_augmentation_equals_one_device(name, kind):
    got = run_sharded(CASES[name], arguments(name), (0, None, 0), kind)
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6), got, one_device(name)
    )
