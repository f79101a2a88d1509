"""LeJEPA (Balestriero & LeCun, 2025): every view's embedding predicts the mean of the global
views' embeddings, and SIGReg keeps the embeddings an isotropic Gaussian.
https://arxiv.org/abs/2511.08544 ; code: https://github.com/rbalestr-lab/lejepa

Multi-crop views (2 global and 6 local crops in the paper's recipe) go through the backbone
(crops of one size as one batch) and a projector (an MLP of ``proj_layers`` Linear layers with
BatchNorm and ReLU between them, as the authors' minimal example's ``torchvision`` MLP), run
once on every crop's features. The loss is :func:`~ssl_jax.losses.lejepa_loss`:
``(1 - λ) L_pred + λ L_SIGReg`` on the projections, with no stop-gradient, no target network
and no schedule (the paper's point); the SIGReg directions are drawn from the step's key,
one set for every view. ``update_state`` is :func:`~ssl_jax.method.no_state_update`.
"""

import jax

from ssl_jax.losses import lejepa_loss
from ssl_jax.method import MULTICROP, Method, method_factory, no_state_update
from ssl_jax.methods.common import embedding_std, online_export
from ssl_jax.methods.networks import embed_crops, init_parts, mlp_head


@method_factory("lejepa", views=MULTICROP)
def make_lejepa(
    backbone,
    views,
    *,
    lamb: float = 0.05,
    num_slices: int = 256,
    t_max: float = 5.0,
    num_points: int = 17,
    proj_hidden_dim: int = 2048,
    proj_dim: int = 128,
    proj_layers: int = 3,
) -> Method:
    """LeJEPA on ``backbone`` and the multi-crop function ``views(images_uint8, key) ->
    (global_crops, local_crops)``. ``lamb``: the paper's λ (0.05 its recommended value);
    ``num_slices``, ``t_max``, ``num_points``: SIGReg's directions and its Epps-Pulley
    integration grid on ``[-t_max, t_max]`` (:func:`~ssl_jax.losses.epps_pulley`)."""
    if not 0.0 <= lamb <= 1.0:
        raise ValueError(f"method.lamb={lamb} must lie in [0, 1] (the paper uses 0.05).")
    if int(num_slices) < 1 or int(num_points) < 2:
        raise ValueError(
            f"method.num_slices={num_slices} must be >= 1 and method.num_points={num_points} "
            ">= 2 (the paper: 256 directions, 17 points)."
        )
    parts = {
        "backbone": backbone,
        "projector": mlp_head(
            backbone.feature_dim, proj_hidden_dim, proj_dim, num_layers=int(proj_layers)
        ),
    }
    options = dict(lamb=lamb, num_slices=int(num_slices), t_max=t_max, num_points=int(num_points))

    def init(key):
        params, stats = init_parts(parts, key)
        return params, {"batch_stats": stats}

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        view_key, slice_key = jax.random.split(key)
        globals_, locals_ = (tuple(crops) for crops in views(batch["images"], view_key))
        if not globals_:
            raise ValueError("LeJEPA needs at least one global crop (a multi-crop augment recipe).")
        n = globals_[0].shape[0]
        z, stats = embed_crops(
            parts, "projector", params, method_state["batch_stats"], globals_ + locals_
        )
        z = z.reshape(len(globals_) + len(locals_), n, -1)
        value, terms = lejepa_loss(z[: len(globals_)], z, slice_key, **options)
        metrics = {**terms, "embedding_std": embedding_std(z[0])}
        return value, ({**method_state, "batch_stats": stats}, metrics)

    return Method(
        name="lejepa",
        init=init,
        loss=loss,
        update_state=no_state_update,
        export=online_export,
        backbone=backbone,
        batch_terms="SIGReg's empirical characteristic function of each view over the batch, "
        "and the projector's BatchNorm",
    )
