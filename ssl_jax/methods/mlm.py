"""Masked language modelling (BERT, Devlin et al. 2019): predict the hidden tokens of a
sentence from the rest. https://arxiv.org/abs/1810.04805

Each step corrupts the batch's token records on the device (:func:`ssl_jax.pretext.mask_tokens`:
15% of the real tokens of each sequence, 80% [MASK] / 10% a random token / 10% unchanged), runs
the text encoder on the corrupted sequences (attention within each packed document), and
scores BERT's MLM head (:class:`~ssl_jax.models.MLMHead`, output tied to the token embedding)
at the chosen positions only, with BERT's loss (:func:`ssl_jax.losses.masked_lm_loss`). The
next-sentence objective is not used (RoBERTa, Liu et al. 2019, found it unnecessary). The
export is the encoder.
"""

import jax
import jax.numpy as jnp

from ssl_jax.data.tokens import MASK_ID, SPECIAL_IDS
from ssl_jax.losses import masked_lm_loss
from ssl_jax.method import TOKENS, Method, method_factory, no_state_update
from ssl_jax.methods.common import (
    make_init,
    masked_accuracy,
    masked_lm_logits,
    online_export,
    text_encoder_shape,
)
from ssl_jax.models import MLMHead, module_def
from ssl_jax.pretext import mask_tokens


@method_factory("mlm", views=TOKENS)
def make_mlm(
    backbone,
    views,
    *,
    rate: float = 0.15,
    max_predictions: int = 0,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
) -> Method:
    """MLM on a text encoder ``backbone`` (``views`` is None: there are no image views).

    ``rate`` of the real tokens of each sequence are predicted, at most ``max_predictions``
    per sequence (0: ``ceil(rate * seq_len)``, 20 for 128 tokens as BERT); of them
    ``mask_prob`` become [MASK] and ``random_prob`` a random ordinary token. Random tokens are
    drawn from the model's whole vocabulary but the special ids: ids the tokenizer never
    produces (a ``model.vocab_size`` above the tokenizer's) play the part of BERT's
    ``[unused]`` tokens.
    """
    del views
    vocab_size = text_encoder_shape(backbone, "mlm").vocab_size
    options = dict(
        rate=rate,
        vocab_size=vocab_size,
        special_ids=SPECIAL_IDS,
        mask_id=MASK_ID,
        max_predictions=max_predictions or None,
        mask_prob=mask_prob,
        random_prob=random_prob,
    )
    mask_tokens(jnp.zeros((1, 8), jnp.int32), jax.random.key(0), **options)  # checks them
    head = module_def(lambda rngs: MLMHead(backbone.feature_dim, vocab_size, rngs=rngs))
    parts = {"backbone": backbone, "head": head}

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        mask_key, drop_key = jax.random.split(key)
        masked = mask_tokens(batch["tokens"], mask_key, **options)
        stats = method_state["batch_stats"]
        logits, _, new_stats = masked_lm_logits(
            backbone,
            head,
            {"encoder": params["backbone"], "head": params["head"]},
            {"encoder": stats["backbone"], "head": stats["head"]},
            masked,
            batch["segments"],
            drop_key,
        )
        value = masked_lm_loss(logits, masked.labels, masked.weights)
        metrics = {
            "mlm_accuracy": masked_accuracy(logits, masked.labels, masked.weights),
            "masked_per_sequence": jnp.mean(jnp.sum(masked.weights, axis=1)),
        }
        new_state = {"batch_stats": {"backbone": new_stats["encoder"], "head": new_stats["head"]}}
        return value, (new_state, metrics)

    return Method(
        name="mlm",
        init=make_init(parts),
        loss=loss,
        update_state=no_state_update,
        export=online_export,
        backbone=backbone,
        batch_terms="the mean over the batch's masked positions (BERT's normaliser)",
    )
