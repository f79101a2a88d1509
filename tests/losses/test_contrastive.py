import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from ssl_jax.losses import contrastive, nt_xent
from ssl_jax.losses.contrastive import (
    contrastive_loss,
    dcl_loss,
    dclw_loss,
    dclw_weights,
    info_nce,
    moco_v3_ctr,
)


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


def contrastive_reference(anchors, positives, negatives, temperature, in_batch, symmetric, scale):
    """van den Oord et al. eq. 4 per anchor, its candidates listed by hand, in float64."""
    unit = lambda v: v / np.linalg.norm(v)
    a = [unit(v) for v in anchors.astype(np.float64)]
    p = [unit(v) for v in positives.astype(np.float64)]
    bank = [] if negatives is None else [unit(v) for v in negatives.astype(np.float64)]
    rows = [
        (a[i], p[i], [p[j] for j in range(len(a)) if j != i] if in_batch else [])
        for i in range(len(a))
    ]
    if symmetric:
        for i in range(len(a)):
            rows[i][2].extend(a[j] for j in range(len(a)) if j != i and in_batch)
            others = [p[j] for j in range(len(a)) if j != i] + [
                a[j] for j in range(len(a)) if j != i
            ]
            rows.append((p[i], a[i], others if in_batch else []))
    total = 0.0
    for anchor, positive, negs in rows:
        scores = [anchor @ positive / temperature] + [anchor @ n / temperature for n in negs + bank]
        total += -scores[0] + np.log(np.sum(np.exp(scores)))
    return scale * total / len(rows)


OPTIONS = [
    dict(in_batch_negatives=True, symmetric=False),
    dict(in_batch_negatives=True, symmetric=True),
    dict(in_batch_negatives=False, symmetric=False),
    dict(in_batch_negatives=False, symmetric=True),
]


@pytest.mark.parametrize(
    "options, bank",
    [(o, b) for o in OPTIONS for b in (True, False) if b or o["in_batch_negatives"]],
)
@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_contrastive_loss_matches_numpy_reference(options, bank, temperature):
    q, k, negatives = _moco_batch(20, n=6, k=9, d=5)
    negatives = negatives if bank else None
    fn = jax.jit(
        lambda a, b, c: contrastive_loss(a, b, c, temperature=temperature, scale=0.7, **options)
    )
    want = contrastive_reference(
        q, k, negatives, temperature, options["in_batch_negatives"], options["symmetric"], 0.7
    )
    np.testing.assert_allclose(fn(q, k, negatives), want, rtol=1e-5)


def test_the_paper_losses_are_contrastive_loss_with_their_options_bit_for_bit():
    args = _moco_batch(21)
    t = 0.3
    pairs = [
        (
            lambda a, b, c: nt_xent(a, b, temperature=t),
            lambda a, b, c: contrastive_loss(a, b, temperature=t, symmetric=True),
        ),
        (
            lambda a, b, c: info_nce(a, b, c, temperature=t),
            lambda a, b, c: contrastive_loss(a, b, c, temperature=t, in_batch_negatives=False),
        ),
        (
            lambda a, b, c: moco_v3_ctr(a, b, temperature=t),
            lambda a, b, c: contrastive_loss(a, b, temperature=t, scale=2 * t),
        ),
    ]
    for wrapper, direct in pairs:
        assert np.array_equal(jax.jit(wrapper)(*args), jax.jit(direct)(*args))


def test_nnclr_is_contrastive_loss_with_support_set_neighbours_as_anchors():
    """Dwibedi et al. 2021 eq. 1: ``NN(z_i, Q)`` from the support set is the anchor, the other
    view's ``z_i^+`` its positive, the batch's other ``z_k^+`` the negatives."""
    rng = np.random.default_rng(22)
    z1, z2 = rng.normal(size=(2, 8, 5)).astype(np.float32)
    support = rng.normal(size=(30, 5)).astype(np.float32)
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
    nn = support[np.argmax(unit(z1) @ unit(support).T, axis=1)]
    tau = 0.1
    scores = unit(nn).astype(np.float64) @ unit(z2).astype(np.float64).T / tau
    want = np.mean(np.log(np.exp(scores).sum(axis=1)) - np.diag(scores))
    got = jax.jit(lambda a, b: contrastive_loss(a, b, temperature=tau))(nn, z2)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_contrastive_loss_gradients_match_finite_differences():
    q, k, negatives = _moco_batch(23, n=4, k=3, d=3)
    with jax.enable_x64(True):
        args = tuple(jnp.asarray(x, dtype=jnp.float64) for x in (q, k, negatives))
        for options in OPTIONS:
            fn = jax.jit(lambda a, b, c, o=options: contrastive_loss(a, b, c, temperature=0.5, **o))
            check_grads(fn, args, order=2, modes=["rev"])


def test_contrastive_loss_invariant_to_permutation_and_scale():
    q, k, negatives = _moco_batch(24)
    rng = np.random.default_rng(24)
    perm, bank_perm = rng.permutation(len(q)), rng.permutation(len(negatives))
    for options in OPTIONS:
        loss = lambda a, b, c, o=options: contrastive_loss(a, b, c, temperature=0.2, **o)
        base = loss(q, k, negatives)
        permuted = loss(3.0 * q[perm], 0.5 * k[perm], 2.0 * negatives[bank_perm])
        np.testing.assert_allclose(permuted, base, rtol=1e-5)


@pytest.mark.parametrize(
    "shapes, kwargs, message",
    [
        (((4, 3), (5, 3)), {}, "same"),
        (((4, 3), (4, 3), (6, 2)), {}, "D=3"),
        (((4, 3), (4, 3)), {"in_batch_negatives": False}, "needs a bank"),
        (((4, 3), (4, 3)), {"temperature": 0.0}, "temperature > 0"),
    ],
)
def test_contrastive_loss_errors(shapes, kwargs, message):
    kwargs = {"temperature": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        contrastive_loss(*(jnp.ones(s) for s in shapes), **kwargs)


def dcl_reference(z1, z2, temperature, sigma=None):
    """Yeh et al. 2022 eq. 6 (DCL) and 7-8 (DCLW) per anchor with loops, in float64: the
    positive out of the denominator, negatives the other 2N - 2 embeddings, mean over 2N."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    weights = np.ones(n)
    if sigma is not None:
        e = np.exp([z[i] @ z[i + n] / sigma for i in range(n)])
        weights = 2.0 - e / e.mean()
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        negatives = [np.exp(z[i] @ z[k] / temperature) for k in range(2 * n) if k not in (i, j)]
        total += -weights[i % n] * (z[i] @ z[j]) / temperature + np.log(np.sum(negatives))
    return total / (2 * n)


def dcl_authors_form(z1, z2, temperature, sigma=None):
    """The authors' one-way ``DCL`` (logsumexp over [z1 z1^T, z1 z2^T] with i's own two columns
    masked), averaged over both directions, in float64."""

    def one_way(a, b):
        cross = a @ b.T
        positive = -np.diag(cross) / temperature
        if sigma is not None:
            s = np.sum(a * b, axis=1) / sigma
            positive = positive * (2 - len(a) * np.exp(s) / np.exp(s).sum())
        logits = np.concatenate([a @ a.T, cross], axis=1) / temperature
        logits[np.tile(np.eye(len(a), dtype=bool), (1, 2))] = -np.inf
        top = logits.max(axis=1, keepdims=True)
        negative = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        return np.mean(positive + negative)

    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)
    a, b = unit(z1.astype(np.float64)), unit(z2.astype(np.float64))
    return 0.5 * (one_way(a, b) + one_way(b, a))


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_dcl_and_dclw_match_the_paper_and_the_authors_form(temperature):
    rng = np.random.default_rng(30)
    z1, z2 = rng.normal(size=(2, 10, 6)).astype(np.float32)
    z2 = z2 + 2.0 * z1  # positives more similar than negatives, so the weights vary
    dcl = jax.jit(lambda a, b: dcl_loss(a, b, temperature=temperature))(z1, z2)
    dclw = jax.jit(lambda a, b: dclw_loss(a, b, temperature=temperature, sigma=0.5))(z1, z2)
    np.testing.assert_allclose(dcl, dcl_reference(z1, z2, temperature), rtol=1e-5)
    np.testing.assert_allclose(dcl, dcl_authors_form(z1, z2, temperature), rtol=1e-5)
    np.testing.assert_allclose(dclw, dcl_reference(z1, z2, temperature, 0.5), rtol=1e-5)
    np.testing.assert_allclose(dclw, dcl_authors_form(z1, z2, temperature, 0.5), rtol=1e-5)
    # Each differs from NT-Xent (the positive in the denominator) and DCL from DCLW.
    coupled = nt_xent_reference(z1, z2, temperature)
    assert abs(float(dcl) - coupled) > 1e-2 and abs(float(dclw) - float(dcl)) > 1e-3


def test_dclw_weights_average_one_and_favour_hard_positives():
    rng = np.random.default_rng(31)
    z1 = rng.normal(size=(8, 5))
    z2 = z1 + rng.normal(size=(8, 5)) * np.linspace(0.0, 2.0, 8)[:, None]
    w = np.asarray(dclw_weights(z1, z2, sigma=0.5))
    np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-6)
    assert w[0] < w[-1]  # the easiest positive (identical views) weighs least
    with pytest.raises(ValueError, match="sigma > 0"):
        dclw_weights(z1, z2, sigma=0.0)


@pytest.mark.parametrize("options", OPTIONS)
def test_decoupled_option_matches_reference_for_every_option(options):
    """``decoupled=True`` on each candidate layout: eq. 4 with the positive left out of the sum."""
    q, k, negatives = _moco_batch(32, n=5, k=7, d=4)
    unit = lambda v: v / np.linalg.norm(v)
    a = [unit(v) for v in q.astype(np.float64)]
    p = [unit(v) for v in k.astype(np.float64)]
    bank = [unit(v) for v in negatives.astype(np.float64)]
    in_batch = options["in_batch_negatives"]
    rows = []
    for i in range(len(a)):
        negs = [p[j] for j in range(len(a)) if j != i] if in_batch else []
        if options["symmetric"] and in_batch:
            negs += [a[j] for j in range(len(a)) if j != i]
        rows.append((a[i], p[i], negs))
    if options["symmetric"]:
        for i in range(len(a)):
            negs = [a[j] for j in range(len(a)) if j != i] if in_batch else []
            negs += [p[j] for j in range(len(a)) if j != i] if in_batch else []
            rows.append((p[i], a[i], negs))
    t = 0.2
    want = np.mean(
        [-(x @ y) / t + np.log(sum(np.exp(x @ m / t) for m in negs + bank)) for x, y, negs in rows]
    )
    fn = jax.jit(lambda *x: contrastive_loss(*x, temperature=t, decoupled=True, **options))
    np.testing.assert_allclose(fn(q, k, negatives), want, rtol=1e-5)


def test_dcl_gradients_match_finite_differences():
    rng = np.random.default_rng(33)
    z1, z2 = rng.normal(size=(2, 5, 4))
    with jax.enable_x64(True):
        args = (jnp.asarray(z1), jnp.asarray(z2))
        dcl = jax.jit(lambda a, b: dcl_loss(a, b, temperature=0.3))
        dclw = jax.jit(lambda a, b: dclw_loss(a, b, temperature=0.3))
        check_grads(dcl, args, order=1, modes=["rev"])
        check_grads(dclw, args, order=1, modes=["rev"])


def test_dcl_invariant_to_batch_permutation_scale_and_view_order():
    rng = np.random.default_rng(34)
    z1, z2 = rng.normal(size=(2, 12, 6)).astype(np.float32)
    perm = rng.permutation(12)
    for loss in (jax.jit(dcl_loss), jax.jit(dclw_loss)):
        base = loss(z1, z2)
        np.testing.assert_allclose(loss(z1[perm], z2[perm]), base, rtol=1e-5)
        np.testing.assert_allclose(loss(3.0 * z1, 0.5 * z2), base, rtol=1e-5)
        np.testing.assert_allclose(loss(z2, z1), base, rtol=1e-5)


def test_positive_weights_need_decoupled_and_shape_n():
    z = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="decoupled=True"):
        contrastive_loss(z, z, temperature=0.1, positive_weights=jnp.ones(4))
    with pytest.raises(ValueError, match=r"\(N,\)=\(4,\)"):
        contrastive_loss(z, z, temperature=0.1, decoupled=True, positive_weights=jnp.ones(3))
