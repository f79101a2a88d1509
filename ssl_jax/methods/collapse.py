"""Signs that a clustering or self-distillation method collapsed to a uniform output.

SwAV and DINO can collapse in their first steps to an output that is the same uniform
distribution over the ``K`` prototypes for every image: SwAV's predictions (then its loss
sits at ``ln K``, the authors' "loss stuck at 8.006 for 3000 prototypes"), DINO's centred
teacher. The entropy of that output is then ``ln K``; an untrained network's is lower.
``benchmarks/collapse_views.py`` shows when it happens on the embedded digits.
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

# A logged entropy above this fraction of ln K is reported as a (possible) collapse.
UNIFORM_FRACTION = 0.99


def mean_entropy(logits: jax.Array) -> jax.Array:
    """Mean over all leading axes of the entropy (nats) of ``softmax(logits)`` (last axis)."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, axis=-1))


def entropy_of_mean(probs: jax.Array) -> jax.Array:
    """Entropy (nats) of the mean of the distributions ``probs`` (last axis) over the rest.

    Low when every image puts its mass on the same few outputs (the other collapse: to one
    output), ``ln K`` when the outputs are used evenly.
    """
    mean = jnp.mean(probs.reshape(-1, probs.shape[-1]), axis=0)
    return -jnp.sum(mean * jnp.log(jnp.clip(mean, 1e-30)))


def uniform_collapse_check(
    metric: str, num_outputs: int, method: str, advice: str
) -> Callable[[dict], str | None]:
    """``diagnose(metrics) -> message or None``: a message when ``metrics[metric]``, an
    entropy over ``num_outputs`` outputs, is above ``UNIFORM_FRACTION * ln(num_outputs)``."""
    ln_k = math.log(num_outputs)

    def diagnose(metrics: dict) -> str | None:
        value = metrics.get(metric)
        if value is None or not value >= UNIFORM_FRACTION * ln_k:
            return None
        return (
            f"{method} may have collapsed to a uniform output: {metric}={float(value):.4f} "
            f"is within {1 - UNIFORM_FRACTION:.0%} of ln K = {ln_k:.4f} (K={num_outputs}), "
            f"the entropy of an output that is the same for every image. {advice}"
        )

    return diagnose
