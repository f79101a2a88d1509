"""Masked language modelling: the cross-entropy of the original tokens at the masked positions."""

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike


def masked_lm_loss(logits: ArrayLike, labels: ArrayLike, weights: ArrayLike) -> jax.Array:
    r"""BERT's masked-LM loss: softmax cross-entropy at the predicted positions only.

    .. math::
        \mathcal{L} = \frac{\sum_{i,m} w_{i,m}\, \big(-\log \operatorname{softmax}(z_{i,m})
        _{y_{i,m}}\big)}{\sum_{i,m} w_{i,m} + 10^{-5}}

    over the ``M`` predicted positions of each sequence ``i``, as BERT's
    ``get_masked_lm_output`` (``numerator / (denominator + 1e-5)``): a mean over the batch's
    real predictions, so the padding of the position list (``w = 0``) counts for nothing and an
    empty batch gives 0. The normaliser is the whole batch's count, so the examples of a batch
    are coupled (sequences with more real tokens weigh more).

    Args:
      logits: ``(N, M, V)`` scores over the vocabulary at the ``M`` positions
        (:func:`ssl_jax.pretext.mask_tokens`' ``positions``); computed in float32.
      labels: ``(N, M)`` int original token ids.
      weights: ``(N, M)`` 1 for a real prediction, 0 for padding.

    Examples:
      >>> import jax.numpy as jnp
      >>> logits = jnp.zeros((1, 2, 4))
      >>> float(masked_lm_loss(logits, jnp.array([[1, 3]]), jnp.array([[1.0, 0.0]])))  # log 4
      1.386...

    References:
      Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
      Understanding", NAACL 2019. https://arxiv.org/abs/1810.04805
    """
    logits, labels, weights = jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights)
    if logits.ndim != 3 or labels.shape != logits.shape[:2] or weights.shape != labels.shape:
        raise ValueError(
            f"masked_lm_loss expects logits (N, M, V) with labels and weights (N, M); got "
            f"{logits.shape}, {labels.shape}, {weights.shape}."
        )
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    weights = weights.astype(jnp.float32)
    return jnp.sum(weights * ce) / (jnp.sum(weights) + 1e-5)


def replaced_token_detection_loss(
    logits: ArrayLike, replaced: ArrayLike, weights: ArrayLike
) -> jax.Array:
    r"""ELECTRA's discriminator loss: per-token sigmoid cross-entropy of "was replaced".

    .. math::
        \mathcal{L} = \frac{\sum_{i,t} w_{i,t}\, \big(-r_{i,t} \log \sigma(z_{i,t})
        - (1 - r_{i,t}) \log(1 - \sigma(z_{i,t}))\big)}{\sum_{i,t} w_{i,t} + 10^{-6}}

    over every token ``t`` of every sequence ``i`` with weight ``w`` (1 on real tokens, 0 on
    padding), ``r`` = 1 where the generator's sample differs from the original token (a sample
    equal to the original counts as original), as ``get_discriminator_output`` of the
    authors' ``run_pretraining.py``.

    Args:
      logits: ``(N, L)`` scores (replaced if positive).
      replaced: ``(N, L)`` bool or 0/1 targets.
      weights: ``(N, L)`` token weights.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.zeros((1, 3))
      >>> float(replaced_token_detection_loss(z, jnp.array([[1, 0, 1]]), jnp.ones((1, 3))))
      0.693...

    References:
      Clark, Luong, Le, Manning, "ELECTRA: Pre-training Text Encoders as Discriminators Rather
      Than Generators", ICLR 2020. https://arxiv.org/abs/2003.10555
    """
    logits, replaced, weights = jnp.asarray(logits), jnp.asarray(replaced), jnp.asarray(weights)
    if logits.ndim != 2 or replaced.shape != logits.shape or weights.shape != logits.shape:
        raise ValueError(
            f"replaced_token_detection_loss expects logits, replaced and weights of one shape "
            f"(N, L); got {logits.shape}, {replaced.shape}, {weights.shape}."
        )
    bce = optax.sigmoid_binary_cross_entropy(
        logits.astype(jnp.float32), replaced.astype(jnp.float32)
    )
    weights = weights.astype(jnp.float32)
    return jnp.sum(weights * bce) / (jnp.sum(weights) + 1e-6)
