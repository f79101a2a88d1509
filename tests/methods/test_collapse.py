"""Collapse signals: entropies against NumPy, the uniform-collapse check's threshold."""

import math

import numpy as np
import pytest

from ssl_jax.methods.collapse import (
    UNIFORM_FRACTION,
    entropy_of_mean,
    mean_entropy,
    uniform_collapse_check,
)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_mean_entropy_and_entropy_of_mean_match_numpy():
    logits = np.random.default_rng(0).normal(size=(3, 5, 7)) * 2
    p = softmax(logits)
    np.testing.assert_allclose(mean_entropy(logits), -np.mean(np.sum(p * np.log(p), -1)), rtol=1e-5)
    mean = p.reshape(-1, 7).mean(0)
    np.testing.assert_allclose(entropy_of_mean(p), -np.sum(mean * np.log(mean)), rtol=1e-5)


def test_entropies_at_the_two_collapses():
    uniform = np.zeros((4, 6))
    np.testing.assert_allclose(mean_entropy(uniform), math.log(6), rtol=1e-6)
    one_hot = np.tile(np.eye(6)[2], (4, 1))  # every image on output 2
    np.testing.assert_allclose(entropy_of_mean(one_hot), 0.0, atol=1e-6)
    np.testing.assert_allclose(entropy_of_mean(np.eye(6)), math.log(6), rtol=1e-6)


@pytest.mark.parametrize(
    "fraction, warns",
    [(0.5, False), (UNIFORM_FRACTION - 1e-4, False), (UNIFORM_FRACTION + 1e-4, True), (1.0, True)],
)
def test_check_warns_above_the_fraction_of_ln_k(fraction, warns):
    check = uniform_collapse_check("h", 100, "M", "Try this.")
    message = check({"h": fraction * math.log(100), "loss": 1.0})
    assert (message is not None) == warns
    if warns:
        assert message.startswith("M may have collapsed") and message.endswith("Try this.")
        assert "h=" in message and "K=100" in message and f"{math.log(100):.4f}" in message


def test_check_ignores_rows_without_the_metric_and_nan():
    check = uniform_collapse_check("h", 10, "M", "")
    assert check({"loss": 5.0}) is None
    assert check({"h": float("nan")}) is None
