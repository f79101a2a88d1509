"""Pieces every two-view joint-embedding method shares: init, forward, export, metrics; and
what the text methods (MLM, ELECTRA) share: the encoder's shape and the masked-LM logits."""

import jax
import jax.numpy as jnp
from flax import nnx

from ssl_jax.losses import l2_normalize
from ssl_jax.method import Method, no_state_update
from ssl_jax.methods.networks import apply_chain, embed_vit_crops, init_parts


def make_init(parts: dict):
    """``init(key) -> (params, {"batch_stats": ...})`` for methods without other state."""

    def init(key):
        params, stats = init_parts(parts, key)
        return params, {"batch_stats": stats}

    return init


def two_views(views, images, key, method: str):
    """``views(images, key)``, checked at trace time to give the two views ``method`` needs."""
    out = tuple(views(images, key))
    if len(out) != 2:
        raise ValueError(f"{method} needs a two-view function, got {len(out)} views.")
    return out


def embed_views(parts: dict, names, params: dict, stats: dict, views) -> tuple[tuple, dict]:
    """Run all views through ``names`` as one batch (BatchNorm statistics over every view)."""
    out, stats = apply_chain(parts, names, params, stats, jnp.concatenate(views))
    return tuple(jnp.split(out, len(views))), stats


def online_export(params: dict, method_state: dict) -> dict:
    return {"params": params["backbone"], "batch_stats": method_state["batch_stats"]["backbone"]}


def embedding_std(z) -> jnp.ndarray:
    """Mean over dimensions of the batch std of L2-normalised embeddings (0 = collapse)."""
    return jnp.mean(jnp.std(l2_normalize(z), axis=0))


def mean_cosine(a, b) -> jnp.ndarray:
    """Mean over the batch of the cosine similarity of matching rows of ``a`` and ``b``."""
    return jnp.mean(jnp.sum(l2_normalize(a) * l2_normalize(b), axis=-1))


def make_two_view_method(name: str, parts: dict, views, objective, *, batch_terms: str) -> Method:
    """A method with no state but batch statistics, from its loss on the two views.

    ``views(images_uint8, key) -> (v1, v2)``; ``objective(params, batch_stats, (v1, v2)) ->
    (loss, new_batch_stats, metrics)``. The online backbone is the export. ``batch_terms``:
    :attr:`Method.batch_terms`.
    """

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        pair = two_views(views, batch["images"], key, name)
        value, stats, metrics = objective(params, method_state["batch_stats"], pair)
        return value, ({"batch_stats": stats}, metrics)

    return Method(
        name=name,
        init=make_init(parts),
        loss=loss,
        update_state=no_state_update,
        export=online_export,
        backbone=parts["backbone"],
        batch_terms=batch_terms,
    )


def text_encoder_shape(backbone, method: str):
    """The abstract module of a text encoder ``backbone`` (its ``vocab_size``, ``max_len``,
    ``feature_dim``, ``blocks``); a clear error for other backbones."""
    module = nnx.eval_shape(lambda: backbone.build(rngs=nnx.Rngs(0)))
    if not hasattr(module, "vocab_size"):
        raise ValueError(
            f"{method} needs a text encoder (model.backbone=bert_tiny/bert_mini/bert_small/"
            f"bert_base), got {type(module).__name__}."
        )
    return module


def masked_lm_logits(encoder, head, params: dict, stats: dict, masked, segments, key):
    """``(logits (N, M, V), hidden (N, L, D), new stats)`` of MLM head ``head`` on text
    encoder ``encoder``'s final tokens at the ``masked`` positions (a
    :class:`~ssl_jax.pretext.MaskedTokens`), the output projection tied to the encoder's
    token embedding. ``params`` / ``stats`` hold ``"encoder"`` and ``"head"`` entries."""
    out, encoder_stats = encoder.apply(
        params["encoder"],
        stats["encoder"],
        masked.tokens,
        train=True,
        return_all=True,
        segments=segments,
        rngs=key,
    )
    hidden = jnp.take_along_axis(out["tokens"], masked.positions[..., None], axis=1)
    embedding = params["encoder"]["token_embed"][...]
    logits, head_stats = head.apply(
        params["head"], stats["head"], hidden, train=True, embedding=embedding
    )
    return logits, out["tokens"], {"encoder": encoder_stats, "head": head_stats}


def masked_accuracy(logits, labels, weights) -> jax.Array:
    """Top-1 accuracy (%) of ``logits`` over the positions of weight 1."""
    hits = (jnp.argmax(logits, axis=-1) == labels) * weights
    return 100.0 * jnp.sum(hits) / jnp.maximum(jnp.sum(weights), 1.0)


def stop_gradient_where(tree, frozen, name: str):
    """Leaves under key ``name`` of ``tree`` get no gradient where ``frozen`` (traced bool)."""

    def select(path, x):
        if any(getattr(k, "key", None) == name for k in path):
            return jnp.where(frozen, jax.lax.stop_gradient(x), x)
        return x

    return jax.tree_util.tree_map_with_path(select, tree)


def masked_student_and_teacher(
    parts, heads, params, method_state, globals_, locals_, masks, *, frozen_last, rngs
):
    """The iBOT-family forward: ``(student, stats, teacher, target_stats)``, the student on
    every crop with the global crops' patches masked by ``masks`` (the heads' last layers
    without gradient while ``frozen_last``, a traced bool, or None: never), the EMA teacher
    on the unmasked global crops in eval mode, without gradient."""
    if frozen_last is not None:
        params = {
            **params,
            **{
                name: stop_gradient_where(params[name], frozen_last, "last_layer")
                for name in set(heads)
            },
        }
    student, stats = embed_vit_crops(
        parts,
        heads,
        params,
        method_state["batch_stats"],
        globals_,
        locals_,
        token_mask=masks,
        rngs=rngs,
    )
    teacher, target_stats = embed_vit_crops(
        parts,
        heads,
        jax.lax.stop_gradient(method_state["target"]),
        method_state["target_batch_stats"],
        globals_,
        train=False,
    )
    return student, stats, jax.lax.stop_gradient(teacher), target_stats
