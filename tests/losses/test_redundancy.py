import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from ssl_jax.losses import l2_normalize, redundancy
from ssl_jax.losses.redundancy import barlow_twins_loss, tico_loss, vicreg_loss, vicreg_terms


def barlow_twins_reference(z1, z2, lambda_):
    """Barlow Twins eq. 1-2 with BatchNorm (no affine, training mode) statistics, in loops."""
    z1, z2 = z1.astype(np.float64), z2.astype(np.float64)
    n, d = z1.shape

    def standardise(z):
        out = np.empty_like(z)
        for i in range(d):
            mean = sum(z[:, i]) / n
            var = sum((z[:, i] - mean) ** 2) / n
            out[:, i] = (z[:, i] - mean) / np.sqrt(var + 1e-5)
        return out

    a, b = standardise(z1), standardise(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1.0 - c_ij) ** 2 if i == j else lambda_ * c_ij**2
    return loss


def vicreg_terms_reference(z1, z2):
    """VICReg eq. 1-5 with the constants of the authors' main_vicreg.py, in loops."""
    z1, z2 = z1.astype(np.float64), z2.astype(np.float64)
    n, d = z1.shape
    invariance = sum(np.sum((z1[k] - z2[k]) ** 2) for k in range(n)) / (n * d)

    def v_and_c(z):
        mean = z.mean(axis=0)
        cov = np.zeros((d, d))
        for k in range(n):
            cov += np.outer(z[k] - mean, z[k] - mean) / (n - 1)
        v = sum(max(0.0, 1.0 - np.sqrt(cov[j, j] + 1e-4)) for j in range(d)) / d
        c = sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return v, c

    (v1, c1), (v2, c2) = v_and_c(z1), v_and_c(z2)
    return {"invariance": invariance, "variance": (v1 + v2) / 2, "covariance": c1 + c2}


def vicreg_reference(z1, z2, sim, std, cov):
    t = vicreg_terms_reference(z1, z2)
    return sim * t["invariance"] + std * t["variance"] + cov * t["covariance"]


def _pair(seed, n=12, d=6, scale=1.0):
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d))
    z2 = z1 @ rng.normal(size=(d, d)) / np.sqrt(d) + 0.5 * rng.normal(size=(n, d))
    return (scale * z1).astype(np.float32), (scale * z2).astype(np.float32)


@pytest.mark.parametrize("lambda_", [5e-3, 0.5])
def test_barlow_twins_matches_numpy_reference(lambda_):
    z1, z2 = _pair(0)
    got = jax.jit(lambda a, b: barlow_twins_loss(a, b, lambda_=lambda_))(z1, z2)
    np.testing.assert_allclose(got, barlow_twins_reference(z1, z2, lambda_), rtol=1e-5)


@pytest.mark.parametrize("scale", [0.3, 2.0])
def test_vicreg_matches_numpy_reference(scale):
    z1, z2 = _pair(1, scale=scale)
    reference = vicreg_terms_reference(z1, z2)
    terms = jax.jit(vicreg_terms)(z1, z2)
    assert set(terms) == set(reference)
    for name, value in reference.items():
        np.testing.assert_allclose(terms[name], value, rtol=1e-5, atol=1e-7, err_msg=name)
    fn = jax.jit(lambda a, b: vicreg_loss(a, b, sim_coeff=2.0, std_coeff=3.0, cov_coeff=0.5))
    np.testing.assert_allclose(fn(z1, z2), vicreg_reference(z1, z2, 2.0, 3.0, 0.5), rtol=1e-5)
    np.testing.assert_allclose(
        vicreg_loss(z1, z2), vicreg_reference(z1, z2, 25.0, 25.0, 1.0), rtol=1e-5
    )


LOSSES = [barlow_twins_loss, vicreg_loss]


@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_match_finite_differences(loss):
    z1, z2 = _pair(2, n=5, d=3, scale=0.5)
    with jax.enable_x64(True):
        args = (jnp.asarray(z1, jnp.float64), jnp.asarray(z2, jnp.float64))
        check_grads(jax.jit(loss), args, order=2, modes=["rev"])


@pytest.mark.parametrize("loss", LOSSES)
def test_passes_gradients_to_both_inputs(loss):
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(*_pair(3, scale=0.5))
    for g in grads:
        assert float(jnp.linalg.norm(g)) > 1e-3


@pytest.mark.parametrize("loss", LOSSES)
def test_invariant_to_permutation_swap_and_common_shift(loss):
    z1, z2 = _pair(4)
    rng = np.random.default_rng(4)
    perm = rng.permutation(len(z1))
    shift = rng.normal(size=z1.shape[1]).astype(np.float32)
    base = loss(z1, z2)
    np.testing.assert_allclose(loss(z1[perm], z2[perm]), base, rtol=1e-5)
    np.testing.assert_allclose(loss(z2, z1), base, rtol=1e-5)
    np.testing.assert_allclose(loss(z1 + shift, z2 + shift), base, rtol=1e-5)


def test_barlow_twins_invariant_to_per_dimension_affine_maps():
    z1, z2 = _pair(5)
    rng = np.random.default_rng(5)
    scale, shift = rng.uniform(1.0, 4.0, size=(2, 2, z1.shape[1])).astype(np.float32)
    moved = barlow_twins_loss(scale[0] * z1 + shift[0], scale[1] * z2 + shift[1])
    np.testing.assert_allclose(moved, barlow_twins_loss(z1, z2), rtol=1e-4)


def test_barlow_twins_zero_for_decorrelated_standardised_identical_views():
    hadamard = np.array([[1.0]])
    for _ in range(3):
        hadamard = np.block([[hadamard, hadamard], [hadamard, -hadamard]])
    z = hadamard[:, 1:5].astype(np.float32)
    assert abs(float(barlow_twins_loss(z, z, lambda_=1.0))) < 1e-8
    assert abs(float(barlow_twins_loss(z, 3.0 * z + 1.0, lambda_=1.0))) < 1e-8
    # The same four columns in the other view, rotated: on-diagonal 0 -> loss D.
    np.testing.assert_allclose(
        barlow_twins_loss(z, np.roll(z, 1, axis=1), lambda_=0.0), 4.0, rtol=1e-4
    )


def test_barlow_twins_lambda_weights_only_the_off_diagonal():
    z1, z2 = _pair(6)
    on = barlow_twins_loss(z1, z2, lambda_=0.0)
    off = barlow_twins_loss(z1, z2, lambda_=1.0) - on
    np.testing.assert_allclose(barlow_twins_loss(z1, z2, lambda_=0.3), on + 0.3 * off, rtol=1e-5)


def test_vicreg_collapsed_embeddings_pay_the_full_variance_hinge():
    collapsed = np.tile(np.arange(5.0, dtype=np.float32), (8, 1))
    terms = vicreg_terms(collapsed, collapsed)
    hinge = 1.0 - np.sqrt(1e-4)
    np.testing.assert_allclose(terms["variance"], hinge, rtol=1e-6)
    np.testing.assert_allclose(terms["invariance"], 0.0, atol=1e-7)
    np.testing.assert_allclose(terms["covariance"], 0.0, atol=1e-7)
    np.testing.assert_allclose(vicreg_loss(collapsed, collapsed), 25.0 * hinge, rtol=1e-6)
    # Only one collapsed view pays half of the hinge.
    spread = np.random.default_rng(7).normal(size=(8, 5)).astype(np.float32)
    spread = (spread - spread.mean(0)) / spread.std(0, ddof=1) * 2.0
    np.testing.assert_allclose(vicreg_terms(collapsed, spread)["variance"], hinge / 2, rtol=1e-6)


def test_vicreg_covariance_term_sees_correlated_dimensions():
    z = np.random.default_rng(8).normal(size=(64, 2)).astype(np.float32)
    decorrelated = vicreg_terms(z, z)["covariance"]
    correlated = vicreg_terms(np.stack([z[:, 0], z[:, 0]], 1), z)["covariance"]
    assert float(decorrelated) < 0.1 < float(correlated)


@pytest.mark.parametrize("loss", LOSSES)
def test_sharded_batch_equals_single_device(loss):
    z1, z2 = _pair(9, n=16, d=8)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = NamedSharding(mesh, P("data"))
    fn = jax.jit(loss)
    sharded = fn(jax.device_put(z1, sharding), jax.device_put(z2, sharding))
    np.testing.assert_allclose(sharded, fn(z1, z2), rtol=1e-5)


@pytest.mark.parametrize("loss", LOSSES + [vicreg_terms])
@pytest.mark.parametrize(
    "shapes, message",
    [
        (((4, 3), (5, 3)), "same shape"),
        (((4, 3, 1), (4, 3, 1)), r"\(batch, dim\)"),
        (((1, 3), (1, 3)), "at least 2"),
    ],
)
def test_shape_errors(loss, shapes, message):
    with pytest.raises(ValueError, match=message):
        loss(jnp.ones(shapes[0]), jnp.ones(shapes[1]))


def test_docstring_examples():
    failures, _ = doctest.testmod(redundancy, verbose=False)
    assert failures == 0


def tico_reference(z1, z2, previous, beta, rho):
    """Zhu et al. 2022 eq. 4-5 in float64 with loops: ``C_t`` from outer products, then
    ``-mean z1.z2 + rho mean z1^T C_t z1``; returns (loss, C_t)."""
    unit = lambda v: v / np.linalg.norm(v)
    a = [unit(v) for v in z1.astype(np.float64)]
    b = [unit(v) for v in z2.astype(np.float64)]
    c = beta * previous.astype(np.float64) + (1 - beta) * sum(np.outer(v, v) for v in a) / len(a)
    invariance = np.mean([x @ y for x, y in zip(a, b, strict=True)])
    contrast = np.mean([x @ c @ x for x in a])
    return -invariance + rho * contrast, c


@pytest.mark.parametrize("beta, rho", [(0.9, 20.0), (0.5, 8.0), (0.0, 1.0)])
def test_tico_matches_numpy_reference_over_steps(beta, rho):
    rng = np.random.default_rng(40)
    c_jax = np.zeros((5, 5), np.float32)
    c_ref = np.zeros((5, 5))
    fn = jax.jit(lambda a, b, c: tico_loss(a, b, c, beta=beta, rho=rho))
    for _ in range(3):  # the running covariance carries over
        z1, z2 = rng.normal(size=(2, 12, 5)).astype(np.float32)
        loss, c_jax = fn(z1, z2, c_jax)
        want, c_ref = tico_reference(z1, z2, c_ref, beta, rho)
        np.testing.assert_allclose(loss, want, rtol=1e-5)
        np.testing.assert_allclose(c_jax, c_ref, rtol=1e-5, atol=1e-7)
    # The covariance term is the one that depends on the past: a wrong (zero) C_{t-1} differs.
    assert beta == 0.0 or abs(float(fn(z1, z2, 0 * c_jax)[0]) - float(loss)) > 1e-3


def test_tico_previous_covariance_gets_no_gradient_the_current_batch_does():
    rng = np.random.default_rng(41)
    z1, z2 = rng.normal(size=(2, 8, 4)).astype(np.float32)
    c = np.eye(4, dtype=np.float32) / 4
    g_c = jax.jit(jax.grad(lambda c: tico_loss(z1, z2, c)[0]))(c)
    assert bool(jnp.all(g_c == 0))
    g_new = jax.jit(jax.grad(lambda a: jnp.sum(tico_loss(a, z2, c)[1])))(z1)
    assert bool(jnp.all(g_new == 0))  # the returned covariance is stored, not trained

    # The batch's own second moment is differentiated (the paper's B inside C_t): freezing it
    # changes the gradient.
    def frozen_batch_moment(a):
        u, v = l2_normalize(a), l2_normalize(z2)
        current = 0.9 * c + 0.1 * jax.lax.stop_gradient(u.T @ u / len(u))
        return -jnp.mean(jnp.sum(u * v, -1)) + jnp.mean(jnp.sum((u @ current) * u, -1))

    with_b = jax.jit(jax.grad(lambda a: tico_loss(a, z2, c, rho=1.0)[0]))(z1)
    np.testing.assert_allclose(tico_loss(z1, z2, c, rho=1.0)[0], frozen_batch_moment(z1), rtol=1e-5)
    frozen = jax.jit(jax.grad(frozen_batch_moment))(z1)
    assert float(jnp.max(jnp.abs(with_b - frozen))) > 1e-4


def test_tico_gradients_match_finite_differences():
    rng = np.random.default_rng(42)
    z1, z2 = rng.normal(size=(2, 5, 3))
    with jax.enable_x64(True):
        c = jnp.asarray(np.eye(3) / 3)
        check_grads(
            jax.jit(lambda a, b: tico_loss(a, b, c, beta=0.8, rho=5.0)[0]),
            (jnp.asarray(z1), jnp.asarray(z2)),
            order=2,
            modes=["rev"],
        )


def test_tico_invariant_to_batch_permutation_and_scale():
    rng = np.random.default_rng(43)
    z1, z2 = rng.normal(size=(2, 10, 4)).astype(np.float32)
    c = np.eye(4, dtype=np.float32) / 4
    perm = rng.permutation(10)
    base = tico_loss(z1, z2, c)[0]
    np.testing.assert_allclose(tico_loss(z1[perm], z2[perm], c)[0], base, rtol=1e-5)
    np.testing.assert_allclose(tico_loss(2.0 * z1, 0.3 * z2, c)[0], base, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"covariance": np.zeros((3, 3))}, r"\(D, D\)=\(4, 4\)"), ({"beta": 1.0}, "0 <= beta < 1")],
)
def test_tico_errors(kwargs, message):
    args = {"covariance": np.zeros((4, 4)), **kwargs}
    covariance = args.pop("covariance")
    with pytest.raises(ValueError, match=message):
        tico_loss(np.ones((4, 4)), np.ones((4, 4)), covariance, **args)
