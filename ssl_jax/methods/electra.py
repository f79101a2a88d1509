"""ELECTRA (Clark et al. 2020): replaced-token detection. https://arxiv.org/abs/2003.10555

A small generator is trained as a masked language model (the corruption of
:func:`ssl_jax.pretext.mask_tokens` and BERT's loss); at each masked position a token is
sampled from its softmax (no gradient flows through the sample), and the discriminator, the
exported encoder, predicts for every real token whether it was replaced (a sample equal to
the original counts as original). The loss is ``generator MLM + rtd_weight *
discriminator`` (lambda = 50 in the paper). Differences from the paper, stated: the
generator keeps token embeddings of its own (the paper ties generator and discriminator
embeddings through an embedding projection), and the masking defaults (85% [MASK], 15%
unchanged, no random tokens) follow our reading of the authors' ``pretrain_helpers.mask``
(unverified here).
"""

import jax
import jax.numpy as jnp

from ssl_jax.data.tokens import MASK_ID, SPECIAL_IDS
from ssl_jax.losses import masked_lm_loss, replaced_token_detection_loss
from ssl_jax.method import TOKENS, Method, method_factory, no_state_update
from ssl_jax.methods.common import (
    make_init,
    masked_accuracy,
    masked_lm_logits,
    online_export,
    text_encoder_shape,
)
from ssl_jax.models import MLMHead, RTDHead, TextEncoder, module_def
from ssl_jax.pretext import mask_tokens


@method_factory("electra", views=TOKENS)
def make_electra(
    backbone,
    views,
    *,
    rate: float = 0.15,
    max_predictions: int = 0,
    mask_prob: float = 0.85,
    random_prob: float = 0.0,
    rtd_weight: float = 50.0,
    generator_divisor: int = 4,
    generator_depth: int = 0,
) -> Method:
    """ELECTRA with the text encoder ``backbone`` as discriminator (``views`` is None).

    The generator is a :class:`~ssl_jax.models.TextEncoder` of width ``D /
    generator_divisor`` (the paper's best: 1/4 to 1/2 of the discriminator's) with as many
    heads divided alike (at least 1), ``generator_depth`` blocks (0: the discriminator's),
    an MLM head tied to its own embedding. Masking as :func:`make_mlm` (``rate``,
    ``max_predictions``, ``mask_prob``, ``random_prob``).
    """
    del views
    shape = text_encoder_shape(backbone, "electra")
    if rtd_weight <= 0:
        raise ValueError(f"rtd_weight={rtd_weight}: expected > 0 (the paper's lambda is 50).")
    width, heads = shape.feature_dim, shape.blocks[0].attn.num_heads
    if generator_divisor < 1 or width % generator_divisor:
        raise ValueError(
            f"generator_divisor={generator_divisor} must divide the width {width}; use 4 or 2."
        )
    gen_width, gen_heads = width // generator_divisor, max(1, heads // generator_divisor)
    if gen_width % gen_heads:
        raise ValueError(f"generator width {gen_width} is not divisible by {gen_heads} heads.")
    vocab_size = shape.vocab_size
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
    generator = module_def(
        lambda rngs: TextEncoder(
            vocab_size=vocab_size,
            max_len=shape.max_len,
            embed_dim=gen_width,
            depth=generator_depth or len(shape.blocks),
            num_heads=gen_heads,
            rngs=rngs,
        )
    )
    parts = {
        "backbone": backbone,
        "rtd_head": module_def(lambda rngs: RTDHead(width, rngs=rngs)),
        "generator": generator,
        "generator_head": module_def(lambda rngs: MLMHead(gen_width, vocab_size, rngs=rngs)),
    }

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        mask_key, sample_key, gen_key, disc_key = jax.random.split(key, 4)
        tokens, segments = batch["tokens"], batch["segments"]
        masked = mask_tokens(tokens, mask_key, **options)
        stats = method_state["batch_stats"]
        logits, _, gen_stats = masked_lm_logits(
            generator,
            parts["generator_head"],
            {"encoder": params["generator"], "head": params["generator_head"]},
            {"encoder": stats["generator"], "head": stats["generator_head"]},
            masked,
            segments,
            gen_key,
        )
        generator_loss = masked_lm_loss(logits, masked.labels, masked.weights)
        sampled = jax.random.categorical(sample_key, jax.lax.stop_gradient(logits))
        sampled = jnp.where(masked.weights > 0, sampled, masked.labels).astype(tokens.dtype)
        rows = jnp.arange(tokens.shape[0])[:, None]
        fake = tokens.at[rows, masked.positions].set(sampled)
        replaced = fake != tokens
        real = ~jnp.isin(tokens, jnp.asarray(SPECIAL_IDS, tokens.dtype))
        out, disc_stats = backbone.apply(
            params["backbone"],
            stats["backbone"],
            fake,
            train=True,
            return_all=True,
            segments=segments,
            rngs=disc_key,
        )
        rtd_logits, head_stats = parts["rtd_head"].apply(
            params["rtd_head"], stats["rtd_head"], out["tokens"], train=True
        )
        weights = real.astype(jnp.float32)
        disc_loss = replaced_token_detection_loss(rtd_logits, replaced, weights)
        value = generator_loss + rtd_weight * disc_loss
        correct = ((rtd_logits > 0) == replaced) * weights
        metrics = {
            "generator_loss": generator_loss,
            "discriminator_loss": disc_loss,
            "generator_accuracy": masked_accuracy(logits, masked.labels, masked.weights),
            "discriminator_accuracy": 100.0 * jnp.sum(correct) / jnp.maximum(weights.sum(), 1),
            "replaced_fraction": jnp.sum(replaced * weights) / jnp.maximum(weights.sum(), 1),
        }
        new_stats = {
            "backbone": disc_stats,
            "rtd_head": head_stats,
            "generator": gen_stats["encoder"],
            "generator_head": gen_stats["head"],
        }
        return value, ({"batch_stats": new_stats}, metrics)

    return Method(
        name="electra",
        init=make_init(parts),
        loss=loss,
        update_state=no_state_update,
        export=online_export,
        backbone=backbone,
        batch_terms="means over the batch's masked positions and real tokens",
    )
