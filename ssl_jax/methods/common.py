"""Pieces every two-view joint-embedding method shares: init, forward, export, metrics."""

import jax
import jax.numpy as jnp

from ssl_jax.losses import l2_normalize
from ssl_jax.method import Method, no_state_update
from ssl_jax.methods.networks import apply_chain, init_parts


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


def stop_gradient_where(tree, frozen, name: str):
    """Leaves under key ``name`` of ``tree`` get no gradient where ``frozen`` (traced bool)."""

    def select(path, x):
        if any(getattr(k, "key", None) == name for k in path):
            return jnp.where(frozen, jax.lax.stop_gradient(x), x)
        return x

    return jax.tree_util.tree_map_with_path(select, tree)
