import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from ssl_jax.losses import regression
from ssl_jax.losses.regression import byol_loss, simsiam_loss


def cosines_reference(p, z):
    """Cosine similarity of each pair of rows, in float64 loops."""
    p, z = p.astype(np.float64), z.astype(np.float64)
    return np.array(
        [a @ b / np.sqrt((a @ a) * (b @ b)) for a, b in zip(p, z, strict=True)], dtype=np.float64
    )


def byol_reference(p, z):
    """BYOL eq. 2: 2 - 2 cos(q, z'), averaged over the batch."""
    return np.mean(2.0 - 2.0 * cosines_reference(p, z))


def simsiam_reference(p, z):
    """SimSiam eq. 1: D(p, z) = -cos(p, z), averaged over the batch."""
    return -np.mean(cosines_reference(p, z))


LOSSES = [(byol_loss, byol_reference), (simsiam_loss, simsiam_reference)]


def _pair(seed, n=12, d=7):
    return np.random.default_rng(seed).normal(size=(2, n, d)).astype(np.float32)


@pytest.mark.parametrize("loss, reference", LOSSES)
def test_matches_numpy_reference(loss, reference):
    p, z = _pair(0)
    z = z + 0.5 * p
    np.testing.assert_allclose(jax.jit(loss)(p, z), reference(p, z), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", [byol_loss, simsiam_loss])
def test_gradients_match_finite_differences(loss):
    p, z = _pair(1, n=4, d=3)
    with jax.enable_x64(True):
        check_grads(jax.jit(loss), (jnp.asarray(p, jnp.float64), jnp.asarray(z, jnp.float64)), 2)


@pytest.mark.parametrize("loss", [byol_loss, simsiam_loss])
def test_passes_gradients_to_both_inputs(loss):
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(*_pair(2))
    for g in grads:
        assert float(jnp.linalg.norm(g)) > 1e-3


@pytest.mark.parametrize("loss", [byol_loss, simsiam_loss])
def test_invariant_to_permutation_and_per_example_scale(loss):
    p, z = _pair(3)
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(p))
    scale = rng.uniform(0.2, 5.0, size=(2, len(p), 1)).astype(np.float32)
    base = loss(p, z)
    np.testing.assert_allclose(loss(p[perm], z[perm]), base, rtol=1e-5)
    np.testing.assert_allclose(loss(scale[0] * p, scale[1] * z), base, rtol=1e-5)
    np.testing.assert_allclose(loss(z, p), base, rtol=1e-5)


def test_known_values():
    p = _pair(4)[0]
    orthogonal = np.stack([p[:, 1], -p[:, 0]] + [0 * p[:, 0]] * 5, axis=1)
    for z, byol, simsiam in [(p, 0.0, -1.0), (-p, 4.0, 1.0), (orthogonal, 2.0, 0.0)]:
        np.testing.assert_allclose(byol_loss(p, 2.0 * z), byol, atol=1e-6)
        np.testing.assert_allclose(simsiam_loss(p, 2.0 * z), simsiam, atol=1e-6)


def test_byol_is_affine_in_simsiam():
    p, z = _pair(5)
    np.testing.assert_allclose(byol_loss(p, z), 2.0 + 2.0 * simsiam_loss(p, z), rtol=1e-5)


@pytest.mark.parametrize("loss", [byol_loss, simsiam_loss])
def test_zero_vector_gives_finite_loss_and_gradient(loss):
    p, z = _pair(6, n=3, d=4)
    value, grads = jax.value_and_grad(loss, argnums=(0, 1))(p, jnp.asarray(z).at[0].set(0.0))
    assert jnp.isfinite(value)
    assert all(jnp.all(jnp.isfinite(g)) for g in grads)


@pytest.mark.parametrize("loss", [byol_loss, simsiam_loss])
def test_sharded_batch_equals_single_device(loss):
    p, z = _pair(7, n=16, d=8)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = NamedSharding(mesh, P("data"))
    fn = jax.jit(loss)
    sharded = fn(jax.device_put(p, sharding), jax.device_put(z, sharding))
    np.testing.assert_allclose(sharded, fn(p, z), rtol=1e-6)


@pytest.mark.parametrize("loss", [byol_loss, simsiam_loss])
@pytest.mark.parametrize(
    "shapes, message",
    [(((4, 3), (5, 3)), "same shape"), (((4, 3, 1), (4, 3, 1)), r"\(batch, dim\)")],
)
def test_shape_errors(loss, shapes, message):
    with pytest.raises(ValueError, match=message):
        loss(jnp.ones(shapes[0]), jnp.ones(shapes[1]))


def test_docstring_examples():
    failures, _ = doctest.testmod(regression, verbose=False)
    assert failures == 0
