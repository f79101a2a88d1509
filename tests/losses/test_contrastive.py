import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from ssl_jax.losses import contrastive, nt_xent


def nt_xent_reference(z1, z2, temperature):
    """SimCLR Algorithm 1 written out with loops in float64."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    n2 = len(z)
    n = n2 // 2
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        sims = [z[i] @ z[k] / temperature for k in range(n2) if k != i]
        total += -(z[i] @ z[j] / temperature) + np.log(np.sum(np.exp(sims)))
    return total / n2


@pytest.mark.parametrize("temperature", [0.05, 0.5, 1.0])
def test_matches_numpy_reference(temperature):
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(2, 12, 7)).astype(np.float32)
    got = jax.jit(lambda a, b: nt_xent(a, b, temperature=temperature))(z1, z2)
    np.testing.assert_allclose(got, nt_xent_reference(z1, z2, temperature), rtol=1e-5)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    z1, z2 = rng.normal(size=(2, 5, 4))
    with jax.enable_x64(True):
        check_grads(
            lambda a, b: nt_xent(a, b, temperature=0.3),
            (jnp.asarray(z1), jnp.asarray(z2)),
            order=2,
            modes=["rev"],
        )


def test_invariant_to_batch_permutation_and_scale():
    rng = np.random.default_rng(2)
    z1, z2 = rng.normal(size=(2, 16, 8)).astype(np.float32)
    perm = rng.permutation(16)
    base = nt_xent(z1, z2, temperature=0.2)
    np.testing.assert_allclose(nt_xent(z1[perm], z2[perm], temperature=0.2), base, rtol=1e-5)
    np.testing.assert_allclose(nt_xent(3.0 * z1, 0.5 * z2, temperature=0.2), base, rtol=1e-5)
    np.testing.assert_allclose(nt_xent(z2, z1, temperature=0.2), base, rtol=1e-5)


def test_aligned_views_beat_random_pairing():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(32, 16)).astype(np.float32)
    aligned = nt_xent(z, z + 0.01 * rng.normal(size=z.shape), temperature=0.1)
    shuffled = nt_xent(z, z[rng.permutation(32)], temperature=0.1)
    assert aligned < 0.5 < shuffled


def test_stable_at_low_temperature():
    z1 = jnp.full((4, 3), 1e3) + jnp.arange(12.0).reshape(4, 3)
    loss, grads = jax.value_and_grad(lambda a: nt_xent(a, z1, temperature=1e-3))(z1 * 1.1)
    assert jnp.isfinite(loss)
    assert jnp.all(jnp.isfinite(grads))


def test_sharded_batch_equals_single_device():
    rng = np.random.default_rng(4)
    z1, z2 = rng.normal(size=(2, 16, 8)).astype(np.float32)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = NamedSharding(mesh, P("data"))
    fn = jax.jit(lambda a, b: nt_xent(a, b, temperature=0.1))
    sharded = fn(jax.device_put(z1, sharding), jax.device_put(z2, sharding))
    np.testing.assert_allclose(sharded, fn(z1, z2), rtol=1e-6)


@pytest.mark.parametrize(
    "shapes, message",
    [(((4, 3), (5, 3)), "same shape"), (((4, 3, 1), (4, 3, 1)), r"\(batch, dim\)")],
)
def test_shape_errors(shapes, message):
    with pytest.raises(ValueError, match=message):
        nt_xent(jnp.ones(shapes[0]), jnp.ones(shapes[1]))


def test_temperature_error():
    with pytest.raises(ValueError, match="temperature > 0"):
        nt_xent(jnp.ones((2, 3)), jnp.ones((2, 3)), temperature=0.0)


def test_docstring_example():
    failures, _ = doctest.testmod(contrastive, verbose=False)
    assert failures == 0
