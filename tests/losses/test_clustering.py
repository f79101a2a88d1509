import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from ssl_jax.losses import clustering
from ssl_jax.losses.clustering import sinkhorn_knopp, swav_codes, swav_loss


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def sinkhorn_reference(out, epsilon, num_iters):
    """The authors' distributed_sinkhorn on one device, in float64 NumPy, without stabilisation."""
    q = np.exp(out.astype(np.float64) / epsilon).T
    b, k = q.shape[1], q.shape[0]
    q /= np.sum(q)
    for _ in range(num_iters):
        q /= np.sum(q, axis=1, keepdims=True)
        q /= k
        q /= np.sum(q, axis=0, keepdims=True)
        q /= b
    q *= b
    return q.T


def swav_loss_reference(scores, codes, temperature):
    """The authors' loss loop in float64 NumPy, crops sliced from one concatenated batch."""
    num_crops, bs, k = scores.shape
    output = scores.reshape(-1, k).astype(np.float64)
    loss = 0.0
    for i, crop_id in enumerate(range(len(codes))):
        q = codes[i].astype(np.float64)
        subloss = 0.0
        for v in np.delete(np.arange(num_crops), crop_id):
            x = output[bs * v : bs * (v + 1)] / temperature
            subloss -= np.mean(np.sum(q * _log_softmax(x), axis=1))
        loss += subloss / (num_crops - 1)
    return loss / len(codes)


def _cosine_scores(seed, *shape, dim=16):
    """Scores as in SwAV: L2-normalised embeddings times L2-normalised prototypes."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(*shape[:-1], dim))
    c = rng.normal(size=(shape[-1], dim))
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    c /= np.linalg.norm(c, axis=-1, keepdims=True)
    return (z @ c.T).astype(np.float32)


@pytest.mark.parametrize("epsilon, num_iters", [(0.05, 3), (0.05, 1), (0.3, 10)])
def test_sinkhorn_matches_authors_loop(epsilon, num_iters):
    scores = _cosine_scores(0, 24, 6)
    got = jax.jit(lambda s: sinkhorn_knopp(s, epsilon=epsilon, num_iters=num_iters))(scores)
    want = sinkhorn_reference(scores, epsilon, num_iters)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)


def test_sinkhorn_stable_where_authors_float32_overflows():
    scores = 30.0 * _cosine_scores(1, 24, 6)  # scores / epsilon up to 600
    with np.errstate(over="ignore"):
        assert not np.all(np.isfinite(np.exp(scores / np.float32(0.05))))
    got = sinkhorn_knopp(scores, epsilon=0.05)
    np.testing.assert_allclose(got, sinkhorn_reference(scores, 0.05, 3), rtol=1e-4, atol=1e-7)
    huge = sinkhorn_knopp(1e4 * np.random.default_rng(1).normal(size=(24, 6)), epsilon=0.05)
    assert np.all(np.isfinite(huge))
    np.testing.assert_allclose(np.sum(huge, axis=1), 1.0, rtol=1e-5)


def test_sinkhorn_rows_are_distributions_and_columns_equipartition_when_converged():
    scores = _cosine_scores(2, 24, 6)
    codes = sinkhorn_knopp(scores)
    assert np.all(codes >= 0)
    np.testing.assert_allclose(np.sum(codes, axis=1), 1.0, rtol=1e-5)
    assert np.max(np.abs(np.sum(codes, axis=0) - 4.0)) > 1e-2  # not converged after 3
    converged = sinkhorn_knopp(scores, num_iters=300)
    np.testing.assert_allclose(np.sum(converged, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.sum(converged, axis=0), 24 / 6, rtol=1e-4)


def test_sinkhorn_invariances():
    scores = _cosine_scores(3, 24, 6)
    rng = np.random.default_rng(3)
    fn = jax.jit(sinkhorn_knopp)
    base = fn(scores)
    per_prototype = rng.normal(size=6).astype(np.float32)
    np.testing.assert_allclose(fn(scores + per_prototype + 0.7), base, rtol=1e-4, atol=1e-7)
    rows, cols = rng.permutation(24), rng.permutation(6)
    np.testing.assert_allclose(fn(scores[rows][:, cols]), base[rows][:, cols], rtol=1e-5, atol=1e-7)


def test_swav_codes_with_and_without_queue():
    scores = _cosine_scores(4, 2, 8, 6)
    queue = _cosine_scores(5, 2, 16, 6)
    fn = jax.jit(lambda s, q: swav_codes(s, queue_scores=q))
    with_queue = fn(scores, queue)
    without = jax.jit(swav_codes)(scores)
    assert with_queue.shape == without.shape == (2, 8, 6)
    for a in range(2):
        full = sinkhorn_reference(np.concatenate([queue[a], scores[a]]), 0.05, 3)
        np.testing.assert_allclose(with_queue[a], full[-8:], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(
            without[a], sinkhorn_reference(scores[a], 0.05, 3), rtol=1e-4, atol=1e-7
        )
    assert np.max(np.abs(with_queue - without)) > 1e-2


def _loss_inputs(seed, num_crops, num_assign, n=6, k=5):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-1, 1, size=(num_crops, n, k)).astype(np.float32)
    codes = rng.dirichlet(np.ones(k), size=(num_assign, n)).astype(np.float32)
    return scores, codes


@pytest.mark.parametrize(
    "num_crops, num_assign, temperature", [(4, 2, 0.1), (2, 2, 0.1), (3, 1, 0.5), (8, 2, 1.0)]
)
def test_swav_loss_matches_authors_loop(num_crops, num_assign, temperature):
    scores, codes = _loss_inputs(6, num_crops, num_assign)
    got = jax.jit(lambda s, q: swav_loss(s, q, temperature=temperature))(scores, codes)
    np.testing.assert_allclose(got, swav_loss_reference(scores, codes, temperature), rtol=1e-5)


def test_swav_loss_invariances():
    scores, codes = _loss_inputs(7, 4, 2, n=8)
    rng = np.random.default_rng(7)
    base = swav_loss(scores, codes)
    perm = rng.permutation(8)
    np.testing.assert_allclose(swav_loss(scores[:, perm], codes[:, perm]), base, rtol=1e-5)
    np.testing.assert_allclose(swav_loss(scores[[0, 1, 3, 2]], codes), base, rtol=1e-5)
    shift = rng.normal(size=(4, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(swav_loss(scores + shift, codes), base, rtol=1e-5)


def test_swav_loss_gradients_match_finite_differences():
    scores, codes = _loss_inputs(8, 3, 2, n=3, k=4)
    with jax.enable_x64(True):
        codes64 = jnp.asarray(codes, jnp.float64)
        check_grads(
            jax.jit(lambda s: swav_loss(s, codes64, temperature=0.5)),
            (jnp.asarray(scores, jnp.float64),),
            order=2,
            modes=["rev"],
        )


def test_codes_receive_gradient_unless_caller_stops_it():
    scores, codes = _loss_inputs(9, 4, 2)
    grad = jax.jit(jax.grad(swav_loss, argnums=1))(scores, codes)
    assert float(jnp.linalg.norm(grad)) > 1e-3


def test_sharded_batch_equals_single_device():
    scores = _cosine_scores(10, 4, 16, 6)
    queue = _cosine_scores(11, 2, 16, 6)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    batch = NamedSharding(mesh, P(None, "data"))

    @jax.jit
    def fn(scores, queue):
        codes = swav_codes(scores[:2], queue_scores=queue)
        return codes, swav_loss(scores, codes), sinkhorn_knopp(scores[0])

    sharded = fn(jax.device_put(scores, batch), jax.device_put(queue, batch))
    for got, want in zip(sharded, fn(scores, queue), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "shapes, message",
    [
        (((4, 6), (2, 6, 5)), r"\(crops, batch, prototypes\)"),
        (((4, 6, 5), (2, 7, 5)), "same"),
        (((4, 6, 5), (2, 6, 4)), "same"),
        (((2, 6, 5), (3, 6, 5)), "1 <= A <= V"),
        (((1, 6, 5), (1, 6, 5)), "V >= 2"),
    ],
)
def test_swav_loss_shape_errors(shapes, message):
    with pytest.raises(ValueError, match=message):
        swav_loss(*(jnp.ones(s) for s in shapes))


def test_argument_errors():
    with pytest.raises(ValueError, match="temperature > 0"):
        swav_loss(jnp.ones((2, 3, 4)), jnp.ones((2, 3, 4)), temperature=0.0)
    with pytest.raises(ValueError, match=r"\(batch, prototypes\)"):
        sinkhorn_knopp(jnp.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="epsilon > 0"):
        sinkhorn_knopp(jnp.ones((3, 4)), epsilon=0.0)
    with pytest.raises(ValueError, match="num_iters >= 1"):
        sinkhorn_knopp(jnp.ones((3, 4)), num_iters=0)
    with pytest.raises(ValueError, match=r"\(crops, batch, prototypes\)"):
        swav_codes(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="queue_scores"):
        swav_codes(jnp.ones((2, 3, 4)), queue_scores=jnp.ones((1, 5, 4)))
    with pytest.raises(ValueError, match="queue_scores"):
        swav_codes(jnp.ones((2, 3, 4)), queue_scores=jnp.ones((2, 5, 3)))


def test_docstring_examples():
    failures, _ = doctest.testmod(clustering, verbose=False)
    assert failures == 0
