"""SimCLR (Chen et al., 2020): two views, a projection MLP, and the NT-Xent loss.

Both views go through the backbone in one batch of 2N, so BatchNorm statistics are those
of all 2N views of the global batch (SimCLR's "global BN", here without any collective
because the jitted step sees the global batch). https://arxiv.org/abs/2002.05709
"""

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ssl_jax.augment import make_multiview_fn
from ssl_jax.encoder import make_backbone
from ssl_jax.losses import nt_xent
from ssl_jax.methods.base import Method, no_state_update
from ssl_jax.methods.views import view_specs_from_config
from ssl_jax.models import MLPHead, apply_module, split_module


def make_simclr(config: ml_collections.ConfigDict) -> Method:
    """SimCLR from the ``model``, ``method`` and ``augment`` config sections."""
    backbone = make_backbone(config.model)
    hp = config.method
    temperature = float(hp.temperature)
    specs = view_specs_from_config(config.augment)
    if len(specs) != 2:
        raise ValueError(f"SimCLR needs a two-view augment recipe, got {len(specs)} views.")
    views = make_multiview_fn(specs)

    def build_projector(rngs):
        return MLPHead(
            backbone.feature_dim, hp.proj_hidden_dim, hp.proj_dim, num_layers=2, rngs=rngs
        )

    projector_def, _, _ = split_module(nnx.eval_shape(lambda: build_projector(nnx.Rngs(0))))

    def init(key, sample_batch=None):
        del sample_batch
        k_backbone, k_proj = jax.random.split(key)
        bb_params, bb_stats = backbone.init(k_backbone)
        _, pj_params, pj_stats = split_module(build_projector(nnx.Rngs(params=k_proj)))
        params = {"backbone": bb_params, "projector": pj_params}
        return params, {"batch_stats": {"backbone": bb_stats, "projector": pj_stats}}

    def loss(params, method_state, batch, key):
        v1, v2 = views(batch["images"], key)
        stats = method_state["batch_stats"]
        feats, bb_stats = backbone.apply(
            params["backbone"], stats["backbone"], jnp.concatenate([v1, v2]), train=True
        )
        z, pj_stats = apply_module(
            projector_def, params["projector"], stats["projector"], feats, train=True
        )
        z1, z2 = jnp.split(z, 2)
        value = nt_xent(z1, z2, temperature=temperature)
        zn = z / jnp.linalg.norm(z, axis=-1, keepdims=True).clip(1e-12)
        z1n, z2n = jnp.split(zn, 2)
        metrics = {
            "pos_cosine": jnp.mean(jnp.sum(z1n * z2n, axis=-1)),
            "embedding_std": jnp.mean(jnp.std(zn, axis=0)),
        }
        new_state = {"batch_stats": {"backbone": bb_stats, "projector": pj_stats}}
        return value, (new_state, metrics)

    def export(params, method_state):
        return {
            "params": params["backbone"],
            "batch_stats": method_state["batch_stats"]["backbone"],
        }

    return Method(
        name="simclr",
        init=init,
        loss=loss,
        update_state=no_state_update,
        export=export,
        backbone=backbone,
    )
