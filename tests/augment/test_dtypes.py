"""Every augmentation keeps the floating dtype of its images: float32, bfloat16 and float16 in,
the same dtype out, with values close to float32's computation on the same (rounded) pixels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import augment
from tests.augment.cases import FLOAT_CASES

IMAGES = np.random.default_rng(0).uniform(size=(8, 8, 8, 3)).astype(np.float32)
TARGETS = augment.one_hot_targets(np.arange(8) % 4, 4)
KEY = jax.random.key(0)


# A float32 value scattered into a bfloat16 array warns now and is an error in later JAX releases.
@pytest.mark.filterwarnings("error::FutureWarning")
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", sorted(FLOAT_CASES))
def test_output_dtype_is_the_input_dtype(name, dtype):
    fn = jax.jit(FLOAT_CASES[name])
    images = jnp.asarray(IMAGES, dtype)
    got = jax.tree.leaves(fn(images, KEY, TARGETS))[0]  # the mixes return (images, targets)
    assert got.dtype == dtype
    want = jax.tree.leaves(fn(images.astype(jnp.float32), KEY, TARGETS))[0]
    tolerance = 10 * float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=tolerance, atol=tolerance)
