"""BERT's masked-language-model corruption of token sequences, pure and jittable.

Devlin et al. (2019, section 3.1 and appendix A.1) choose 15% of the token positions of each
sequence at random, and replace the chosen token by ``[MASK]`` 80% of the time, by a random
token 10% of the time and leave it unchanged 10% of the time; the model predicts the original
token at every chosen position. Their data script (``create_pretraining_data.py``) chooses
``min(max_predictions_per_seq, max(1, round(len(tokens) * masked_lm_prob)))`` positions,
never ``[CLS]`` or ``[SEP]``, and pads the list of positions to ``max_predictions_per_seq``
with weight 0, so that shapes are static: 20 for 128 tokens.

:func:`mask_tokens` does the same on the accelerator, with two differences, both stated:

- the count is ``round(rate * R)`` of the ``R`` *real* tokens (not special, not padding; BERT
  counts the whole sequence, special tokens included), at least 1 when ``R > 0``, at most
  ``max_predictions`` (default ``ceil(rate * L)`` for sequences of ``L`` tokens, so that the
  cap binds only for a sequence without special tokens at all);
- a random replacement is drawn uniformly from the vocabulary *without* the special ids
  (BERT's script draws from the whole vocabulary, so it may insert a ``[CLS]``).

``round`` is round-half-to-even, as Python's and NumPy's. Whole-word masking is not done.

Reference: Devlin, Chang, Lee, Toutanova, "BERT: Pre-training of Deep Bidirectional
Transformers for Language Understanding", NAACL 2019. https://arxiv.org/abs/1810.04805
"""

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["MaskedTokens", "corrupt_tokens", "mask_tokens", "max_predictions_for"]


class MaskedTokens(NamedTuple):
    """The corrupted batch: ``tokens`` ``(N, L)``, the chosen ``positions`` ``(N, M)``, the
    original ids there (``labels``, ``(N, M)``) and ``weights`` ``(N, M)`` float32, 1 for a
    chosen position and 0 for the padding of the list (whose position and label are
    meaningless)."""

    tokens: jax.Array
    positions: jax.Array
    labels: jax.Array
    weights: jax.Array


def max_predictions_for(seq_len: int, rate: float, max_predictions: int | None = None) -> int:
    """``M``, the static number of predicted positions per sequence: ``max_predictions``, or
    ``ceil(rate * seq_len)``; ``ValueError`` unless ``1 <= M <= seq_len``."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"mask rate={rate!r} must lie in (0, 1]; BERT uses 0.15.")
    m = math.ceil(rate * seq_len - 1e-9) if max_predictions is None else int(max_predictions)
    if not 1 <= m <= seq_len:
        raise ValueError(
            f"max_predictions={m} must lie in [1, seq_len={seq_len}]; BERT uses 20 for 128 tokens."
        )
    return m


def _check(vocab_size: int, special_ids: Sequence[int], mask_prob: float, random_prob: float):
    special = sorted({int(s) for s in special_ids})
    if not special or special[0] < 0 or special[-1] >= vocab_size:
        raise ValueError(
            f"special_ids={list(special_ids)} must be non-empty ids in [0, vocab_size="
            f"{vocab_size})."
        )
    if vocab_size <= len(special):
        raise ValueError(f"vocab_size={vocab_size} leaves no ordinary token to draw.")
    if mask_prob < 0 or random_prob < 0 or mask_prob + random_prob > 1:
        raise ValueError(
            f"mask_prob={mask_prob} and random_prob={random_prob} must be >= 0 with a sum <= 1 "
            "(BERT: 0.8 and 0.1)."
        )
    return special


def corrupt_tokens(
    tokens: jax.typing.ArrayLike,
    scores: jax.typing.ArrayLike,
    action: jax.typing.ArrayLike,
    replacement: jax.typing.ArrayLike,
    *,
    rate: float,
    special_ids: Sequence[int],
    mask_id: int,
    max_predictions: int,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
) -> MaskedTokens:
    """:func:`mask_tokens` given its random draws: ``scores`` ``(N, L)`` uniform in [0, 1)
    (the ``count`` highest among real tokens are chosen, highest first), ``action`` ``(N, M)``
    uniform in [0, 1) (below ``mask_prob``: ``[MASK]``; below ``mask_prob + random_prob``:
    the replacement; else unchanged) and ``replacement`` ``(N, M)`` ordinary-token ids."""
    tokens = jnp.asarray(tokens)
    n, _ = tokens.shape
    m = max_predictions
    candidate = ~jnp.isin(tokens, jnp.asarray(special_ids, tokens.dtype))
    real = jnp.sum(candidate, axis=1)
    count = jnp.clip(jnp.round(rate * real), jnp.minimum(real, 1), m).astype(jnp.int32)
    keyed = jnp.where(candidate, jnp.asarray(scores, jnp.float32), -1.0)
    _, positions = jax.lax.top_k(keyed, m)
    weights = jnp.arange(m)[None, :] < count[:, None]
    labels = jnp.take_along_axis(tokens, positions, axis=1)
    action = jnp.asarray(action)
    replacement = jnp.asarray(replacement).astype(tokens.dtype)
    new = jnp.where(
        action < mask_prob,
        jnp.asarray(mask_id, tokens.dtype),
        jnp.where(action < mask_prob + random_prob, replacement, labels),
    )
    new = jnp.where(weights, new, labels)
    rows = jnp.arange(n)[:, None]
    corrupted = tokens.at[rows, positions].set(new)
    return MaskedTokens(corrupted, positions.astype(jnp.int32), labels, weights.astype(jnp.float32))


def mask_tokens(
    tokens: jax.typing.ArrayLike,
    key: jax.Array,
    *,
    rate: float = 0.15,
    vocab_size: int,
    special_ids: Sequence[int],
    mask_id: int,
    max_predictions: int | None = None,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
) -> MaskedTokens:
    """BERT's corruption of int ``tokens`` ``(N, L)`` (see the module docstring).

    ``special_ids`` (``[PAD]``, ``[CLS]``, ``[SEP]``, ``[MASK]``, ``[UNK]``...) are never
    chosen; ``vocab_size`` bounds the random replacements, drawn uniformly from the ids in
    ``[0, vocab_size)`` that are not special. ``M = max_predictions_for(L, rate,
    max_predictions)`` positions per sequence, static. Hyperparameters are checked while
    tracing (``ValueError``).
    """
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"tokens must be integer ids (N, L), got {tokens.dtype} {tokens.shape}.")
    special = _check(vocab_size, special_ids, mask_prob, random_prob)
    n, length = tokens.shape
    m = max_predictions_for(length, rate, max_predictions)
    score_key, action_key, random_key = jax.random.split(key, 3)
    scores = jax.random.uniform(score_key, (n, length))
    action = jax.random.uniform(action_key, (n, m))
    replacement = jax.random.randint(random_key, (n, m), 0, vocab_size - len(special))
    for s in special:  # the r-th ordinary id: skip every special id at or below it
        replacement = replacement + (replacement >= s)
    return corrupt_tokens(
        tokens,
        scores,
        action,
        replacement,
        rate=rate,
        special_ids=special,
        mask_id=mask_id,
        max_predictions=m,
        mask_prob=mask_prob,
        random_prob=random_prob,
    )
