import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.augment import mix

# About 18 s of compiles for 14 small tests: run in the slow job.
pytestmark = pytest.mark.slow

mixup = jax.jit(mix.mixup, static_argnames="alpha")
cutmix = jax.jit(mix.cutmix, static_argnames="alpha")
box_mask = jax.jit(mix.cutmix_box_mask, static_argnums=(0, 1))
mix_batch = jax.jit(mix.mix_batch, static_argnames=("mixup_alpha", "cutmix_alpha", "switch_prob"))


def batch(n=6, size=8, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, size, size, channels)).astype(np.float32)
    labels = np.minimum(np.arange(n), 4)  # example i and n - 1 - i differ in label (n <= 6)
    return images, labels, np.eye(5, dtype=np.float32)[labels]


def numpy_rand_bbox(height, width, lam, cy, cx):
    """timm's ``rand_bbox`` (timm/data/mixup.py) with the centre given."""
    ratio = np.sqrt(1 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    yl, yh = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + cut_h // 2, 0, height)
    xl, xh = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + cut_w // 2, 0, width)
    mask = np.zeros((height, width), bool)
    mask[yl:yh, xl:xh] = True
    return mask


def test_one_hot_targets_match_the_label_smoothing_formula():
    labels = np.array([0, 3, 2, 3])
    for eps in (0.0, 0.1, 0.5):
        got = mix.one_hot_targets(jnp.asarray(labels), 4, label_smoothing=eps)
        want = (1 - eps) * np.eye(4)[labels] + eps / 4
        np.testing.assert_allclose(got, want, atol=1e-7)
        np.testing.assert_allclose(np.sum(got, axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="label_smoothing"):
        mix.one_hot_targets(jnp.asarray(labels), 4, label_smoothing=1.0)


def test_smoothed_cross_entropy_matches_numpy():
    """The fine-tuning loss's target side: -sum_k t_k log softmax(z)_k with smoothed t equals
    (1 - eps) CE(z, y) + eps * mean_k(-log softmax(z)_k)."""
    import optax

    rng = np.random.default_rng(1)
    logits, labels, eps = rng.normal(size=(5, 7)), rng.integers(0, 7, 5), 0.2
    targets = mix.one_hot_targets(jnp.asarray(labels), 7, label_smoothing=eps)
    got = optax.softmax_cross_entropy(jnp.asarray(logits, jnp.float32), targets)
    log_p = logits - logits.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    want = -(1 - eps) * log_p[np.arange(5), labels] - eps * log_p.mean(1)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_mixup_mixes_each_example_with_its_mirror_by_one_lambda():
    images, labels, targets = batch()
    out, mixed = mixup(images, targets, jax.random.key(0), alpha=0.4)
    lam = float(mixed[0, labels[0]])  # the weight of example 0's own class
    assert 0 < lam < 1
    np.testing.assert_allclose(out, lam * images + (1 - lam) * images[::-1], atol=1e-6)
    np.testing.assert_allclose(mixed, lam * targets + (1 - lam) * targets[::-1], atol=1e-6)
    np.testing.assert_array_equal(out, mixup(images, targets, jax.random.key(0), alpha=0.4)[0])
    assert not np.allclose(out, mixup(images, targets, jax.random.key(1), alpha=0.4)[0])


def test_mixup_lambda_follows_beta_alpha_alpha():
    images, labels, targets = batch(n=2, size=1, channels=1)
    keys = jax.random.split(jax.random.key(2), 4000)
    mixed = jax.vmap(lambda k: mixup(images, targets, k, alpha=0.4)[1])(keys)
    lam = np.asarray(mixed[:, 0, labels[0]])
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)).
    assert abs(lam.mean() - 0.5) < 0.02
    assert abs(lam.var() - 1 / (4 * 1.8)) < 0.01


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_cutmix_box_mask_matches_timm(lam):
    for cy in range(0, 9, 2):
        for cx in range(0, 11, 3):
            got = box_mask(9, 11, lam, (cy, cx))
            np.testing.assert_array_equal(got, numpy_rand_bbox(9, 11, lam, cy, cx))


def test_cutmix_pastes_one_box_of_the_mirror_and_weights_targets_by_the_kept_area():
    images, labels, targets = batch()
    boxes = 0
    for seed in range(20):
        out, mixed = map(np.asarray, cutmix(images, targets, jax.random.key(seed), alpha=1.0))
        pasted = out != images
        np.testing.assert_array_equal(out[pasted], images[::-1][pasted])
        box = pasted[0, :, :, 0]  # inputs differ everywhere: pasted pixels show the box
        assert (pasted == box[None, :, :, None]).all()  # one box, every example and channel
        rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
        if box.any():
            boxes += 1
            assert box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
            assert box.sum() == len(rows) * len(cols)
        kept = 1 - box.mean()
        np.testing.assert_allclose(mixed, kept * targets + (1 - kept) * targets[::-1], atol=1e-6)
        assert math.isclose(float(mixed[0, labels[0]]), kept, abs_tol=1e-6)
    assert boxes >= 10


def test_mix_batch_is_off_or_picks_cutmix_with_switch_prob():
    images, _, targets = batch()
    out, t = mix_batch(images, targets, jax.random.key(4))
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(t, targets)

    def kinds(switch_prob):
        fn = lambda k: mix.mix_batch(
            images, targets, k, mixup_alpha=0.4, cutmix_alpha=1.0, switch_prob=switch_prob
        )[0]
        outs = np.asarray(jax.vmap(fn)(jax.random.split(jax.random.key(5), 16)))
        # A CutMix output holds pixels of the image or of its mirror; a Mixup one blends them.
        return [bool(np.all((o == images) | (o == images[::-1]))) for o in outs]

    assert set(kinds(0.5)) == {True, False}
    assert all(kinds(1.0))


def test_vmap_over_keys_agrees_with_one_key_at_a_time():
    images, _, targets = batch()
    keys = jax.random.split(jax.random.key(6), 3)
    stacked = jax.vmap(lambda k: mix.mixup(images, targets, k, alpha=0.4))(keys)
    for i, key in enumerate(keys):
        for a, b in zip(mixup(images, targets, key, alpha=0.4), stacked, strict=True):
            np.testing.assert_allclose(a, b[i], atol=1e-6)


def test_bad_arguments_raise_clear_errors():
    images, _, targets = batch()
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="mixup alpha must be a number >= 0"):
        mix.mixup(images, targets, key, alpha=-1.0)
    with pytest.raises(ValueError, match="targets must be"):
        mix.cutmix(images, targets[:3], key, alpha=1.0)
    with pytest.raises(ValueError, match="floating NHWC"):
        mix.mixup(images[0], targets, key, alpha=1.0)
    with pytest.raises(ValueError, match="switch_prob"):
        mix.mix_batch(images, targets, key, mixup_alpha=1, cutmix_alpha=1, switch_prob=2)


def test_docstring_examples():
    failures, _ = doctest.testmod(mix, verbose=False)
    assert failures == 0
