import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from ssl_jax.losses import contrastive, nt_xent
from ssl_jax.losses.contrastive import info_nce


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


def info_nce_reference(query, key, negatives, temperature):
    """MoCo eq. 1 for each query, written out with loops in float64."""
    unit = lambda v: v / np.linalg.norm(v)
    total = 0.0
    for q, k in zip(query.astype(np.float64), key.astype(np.float64), strict=True):
        q, k = unit(q), unit(k)
        scores = [q @ k / temperature] + [q @ unit(n) / temperature for n in negatives]
        total += -scores[0] + np.log(np.sum(np.exp(scores)))
    return total / len(query)


def _moco_batch(seed, n=12, k=20, d=7):
    rng = np.random.default_rng(seed)
    q, key = rng.normal(size=(2, n, d)).astype(np.float32)
    return q, key, rng.normal(size=(k, d)).astype(np.float32)


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_info_nce_matches_numpy_reference(temperature):
    q, k, negatives = _moco_batch(10)
    got = jax.jit(lambda a, b, c: info_nce(a, b, c, temperature=temperature))(q, k, negatives)
    np.testing.assert_allclose(got, info_nce_reference(q, k, negatives, temperature), rtol=1e-5)


def test_info_nce_known_value_with_orthogonal_negatives():
    e = np.eye(6, dtype=np.float32)
    got = info_nce(e[:2], 2.0 * e[:2], e[2:], temperature=0.5)
    np.testing.assert_allclose(got, np.log(1 + 4 * np.exp(-2.0)), rtol=1e-6)


def test_info_nce_gradients_match_finite_differences():
    q, k, negatives = _moco_batch(11, n=4, k=5, d=3)
    with jax.enable_x64(True):
        args = tuple(jnp.asarray(x, dtype=jnp.float64) for x in (q, k, negatives))
        fn = jax.jit(lambda a, b, c: info_nce(a, b, c, temperature=0.3))
        check_grads(fn, args, order=2, modes=["rev"])


def test_info_nce_passes_gradients_to_every_input():
    loss = lambda *x: info_nce(*x, temperature=0.2)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*_moco_batch(12))
    for g in grads:
        assert float(jnp.linalg.norm(g)) > 1e-3


def test_info_nce_invariant_to_permutation_and_scale():
    q, k, negatives = _moco_batch(13)
    rng = np.random.default_rng(13)
    perm, queue_perm = rng.permutation(len(q)), rng.permutation(len(negatives))
    loss = lambda a, b, c: info_nce(a, b, c, temperature=0.2)
    base = loss(q, k, negatives)
    np.testing.assert_allclose(loss(q[perm], k[perm], negatives[queue_perm]), base, rtol=1e-5)
    row_scale = rng.uniform(0.5, 3.0, size=(len(q), 1)).astype(np.float32)
    np.testing.assert_allclose(loss(row_scale * q, 2.0 * k, 0.3 * negatives), base, rtol=1e-5)


def test_info_nce_sharded_batch_equals_single_device():
    q, k, negatives = _moco_batch(14, n=16, k=32, d=8)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = NamedSharding(mesh, P("data"))
    fn = jax.jit(lambda a, b, c: info_nce(a, b, c, temperature=0.2))
    sharded = fn(*(jax.device_put(x, sharding) for x in (q, k, negatives)))
    np.testing.assert_allclose(sharded, fn(q, k, negatives), rtol=1e-6)


@pytest.mark.parametrize(
    "shapes, message",
    [
        (((4, 3), (5, 3), (6, 3)), "same shape"),
        (((4, 3), (4, 3), (6, 2)), "D=3"),
        (((4, 3), (4, 3), (3,)), r"\(K, D\)"),
    ],
)
def test_info_nce_shape_errors(shapes, message):
    with pytest.raises(ValueError, match=message):
        info_nce(*(jnp.ones(s) for s in shapes), temperature=0.1)


def test_info_nce_temperature_error():
    with pytest.raises(ValueError, match="temperature > 0"):
        info_nce(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.ones((4, 3)), temperature=-1.0)
