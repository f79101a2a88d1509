"""Pieces every two-view joint-embedding method shares: views, init, forward, export."""

import jax.numpy as jnp
import ml_collections

from ssl_jax.augment import make_multiview_fn
from ssl_jax.losses import l2_normalize
from ssl_jax.methods.base import Method, no_state_update
from ssl_jax.methods.networks import HeadDef, apply_chain, init_parts, mlp_head
from ssl_jax.methods.views import view_specs_from_config


def two_view_fn(config: ml_collections.ConfigDict, method: str):
    """The jittable ``views(images_uint8, key) -> (v1, v2)`` of the ``augment`` section."""
    specs = view_specs_from_config(config.augment)
    if len(specs) != 2:
        raise ValueError(f"{method} needs a two-view augment recipe, got {len(specs)} views.")
    return make_multiview_fn(specs)


def require_online_export(config: ml_collections.ConfigDict, method: str) -> None:
    if config.export.network != "online":
        raise ValueError(
            f"export.network={config.export.network!r}: {method} has only the online network; "
            "use 'online'."
        )


def make_init(parts: dict):
    """``init(key, sample_batch) -> (params, {"batch_stats": ...})`` for methods without state."""

    def init(key, sample_batch=None):
        del sample_batch
        params, stats = init_parts(parts, key)
        return params, {"batch_stats": stats}

    return init


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


def projector(config: ml_collections.ConfigDict, feature_dim: int, **kwargs) -> HeadDef:
    """``MLPHead(feature_dim, method.proj_hidden_dim, method.proj_dim, **kwargs)``."""
    return mlp_head(feature_dim, config.method.proj_hidden_dim, config.method.proj_dim, **kwargs)


def make_two_view_method(config, name: str, parts: dict, objective) -> Method:
    """A method with no state but batch statistics, from its loss on the two views.

    ``objective(params, batch_stats, (v1, v2)) -> (loss, new_batch_stats, metrics)``.
    """
    views = two_view_fn(config, name)
    require_online_export(config, name)

    def loss(params, method_state, batch, key):
        value, stats, metrics = objective(
            params, method_state["batch_stats"], views(batch["images"], key)
        )
        return value, ({"batch_stats": stats}, metrics)

    return Method(
        name=name,
        init=make_init(parts),
        loss=loss,
        update_state=no_state_update,
        export=online_export,
        backbone=parts["backbone"],
    )
