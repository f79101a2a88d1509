"""BERT's token corruption: against a NumPy reference on the same draws, and by its statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.pretext.tokens import corrupt_tokens, mask_tokens, max_predictions_for

PAD, UNK, CLS, SEP, MASK = range(5)
SPECIAL = (PAD, UNK, CLS, SEP, MASK)
VOCAB = 40


def batch(rng, n, length):
    """[CLS] words [SEP] [PAD]...: real lengths from 0 to length - 2, a few [UNK] inside."""
    tokens = np.full((n, length), PAD, np.int32)
    for i in range(n):
        r = int(rng.integers(0, length - 1))
        tokens[i, 0], tokens[i, 1 + r] = CLS, SEP
        tokens[i, 1 : 1 + r] = rng.integers(5, VOCAB, r)
        tokens[i, 1 : 1 + r][rng.random(r) < 0.05] = UNK
    return tokens


def reference(tokens, scores, action, replacement, rate, m, mask_prob=0.8, random_prob=0.1):
    """Row by row: the round(rate * R) real positions of highest score, then 80/10/10."""
    out = tokens.copy()
    positions, labels, weights = [], [], []
    for row, s, a, rep in zip(tokens, scores, action, replacement, strict=True):
        real = np.flatnonzero(~np.isin(row, SPECIAL))
        count = min(m, max(1, round(rate * len(real)))) if len(real) else 0
        chosen = real[np.argsort(-s[real], kind="stable")][:count]
        positions.append(chosen.tolist())
        labels.append(row[chosen].tolist())
        weights.append(count)
        i = len(positions) - 1
        for k, p in enumerate(chosen):
            if a[k] < mask_prob:
                out[i, p] = MASK
            elif a[k] < mask_prob + random_prob:
                out[i, p] = rep[k]
    return out, positions, labels, weights


def test_equals_the_numpy_reference_on_the_same_draws():
    rng = np.random.default_rng(0)
    tokens = batch(rng, 64, 24)
    m = max_predictions_for(24, 0.15)
    scores, action = rng.random((64, 24)), rng.random((64, m))
    replacement = rng.integers(5, VOCAB, (64, m))
    got = jax.jit(
        lambda *a: corrupt_tokens(
            *a, rate=0.15, special_ids=SPECIAL, mask_id=MASK, max_predictions=m
        )
    )(tokens, scores, action, replacement)
    want, positions, labels, counts = reference(tokens, scores, action, replacement, 0.15, m)
    np.testing.assert_array_equal(got.tokens, want)
    for i in range(64):
        k = counts[i]
        np.testing.assert_array_equal(got.weights[i], [1.0] * k + [0.0] * (m - k))
        np.testing.assert_array_equal(got.positions[i, :k], positions[i])
        np.testing.assert_array_equal(got.labels[i, :k], labels[i])


@pytest.fixture(scope="module")
def large():
    tokens = batch(np.random.default_rng(1), 4000, 48)
    fn = jax.jit(
        lambda t, k: mask_tokens(
            t, k, rate=0.15, vocab_size=VOCAB, special_ids=SPECIAL, mask_id=MASK
        )
    )
    return tokens, jax.device_get(fn(tokens, jax.random.key(0)))


def test_counts_are_static_and_special_tokens_never_chosen(large):
    tokens, out = large
    m = max_predictions_for(48, 0.15)
    assert m == 8 and out.positions.shape == (4000, m) and out.tokens.dtype == np.int32
    real = (~np.isin(tokens, SPECIAL)).sum(1)
    want = np.where(real > 0, np.clip(np.round(0.15 * real), 1, m), 0)
    np.testing.assert_array_equal(out.weights.sum(1), want)
    chosen = out.weights > 0
    picked = np.take_along_axis(tokens, out.positions, 1)
    assert not np.isin(picked[chosen], SPECIAL).any()
    np.testing.assert_array_equal(picked, out.labels)
    # Positions not chosen keep their token; each chosen position appears once in its row.
    hit = np.zeros(tokens.shape, bool)
    for i, (row, w) in enumerate(zip(out.positions, chosen, strict=True)):
        hit[i, row[w]] = True
    np.testing.assert_array_equal(out.tokens[~hit], tokens[~hit])
    for row, w in zip(out.positions, chosen, strict=True):
        assert len(set(row[w].tolist())) == int(w.sum())


def test_eighty_ten_ten_and_uniform_choices(large):
    tokens, out = large
    chosen = out.weights > 0
    new = np.take_along_axis(out.tokens, out.positions, 1)[chosen]
    orig = out.labels[chosen]
    total = len(new)
    masked = np.mean(new == MASK)
    same = np.mean(new == orig)  # unchanged, or a random draw equal to the original (1/35)
    sigma = np.sqrt(0.25 / total)
    assert abs(masked - 0.8) < 4 * sigma
    assert abs(same - (0.1 + 0.1 / (VOCAB - 5))) < 4 * sigma
    replaced = new[(new != MASK) & (new != orig)]
    assert replaced.min() >= 5 and replaced.max() < VOCAB  # never a special id
    counts = np.bincount(replaced, minlength=VOCAB)[5:]
    assert counts.min() > 0.5 * counts.mean()  # every ordinary id drawn, roughly uniformly
    # Among rows of 20 real tokens, each real position is chosen with probability 3/20.
    real = (~np.isin(tokens, SPECIAL)).sum(1)
    rows = np.flatnonzero((real == 20) & ~(tokens == UNK).any(1))  # real tokens at 1..20
    hits = np.zeros(48)
    for i in rows:
        hits[out.positions[i][chosen[i]]] += 1
    freq = hits[1:21] / len(rows)
    assert np.all(np.abs(freq - 3 / 20) < 4 * np.sqrt(0.15 * 0.85 / len(rows))), freq


def test_bad_hyperparameters_are_one_line_errors():
    tokens, key = jnp.full((2, 8), 7), jax.random.key(0)
    kwargs = dict(vocab_size=VOCAB, special_ids=SPECIAL, mask_id=MASK)
    with pytest.raises(ValueError, match=r"rate=0.0 must lie in \(0, 1\]"):
        mask_tokens(tokens, key, rate=0.0, **kwargs)
    with pytest.raises(ValueError, match="max_predictions=9"):
        mask_tokens(tokens, key, max_predictions=9, **kwargs)
    with pytest.raises(ValueError, match="sum <= 1"):
        mask_tokens(tokens, key, mask_prob=0.95, **kwargs)
    with pytest.raises(ValueError, match="special_ids"):
        mask_tokens(tokens, key, vocab_size=4, special_ids=SPECIAL, mask_id=MASK)
    with pytest.raises(ValueError, match="integer ids"):
        mask_tokens(tokens.astype(float), key, **kwargs)
