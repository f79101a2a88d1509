"""SwAV (Caron et al., 2020): swapped prediction of online cluster assignments.

Every crop goes through backbone -> projector MLP (BatchNorm, ReLU) -> L2-normalise -> scores
against ``K`` prototypes. The two global crops' scores give soft codes by Sinkhorn-Knopp
equipartition (:func:`~ssl_jax.losses.swav_codes`, no gradient), and each crop predicts the
codes of the other crops (:func:`~ssl_jax.losses.swav_loss`). Crops of one resolution go
through the backbone as one batch; the projector runs once on all of them.

- **Prototypes** are ``params["prototypes"]``, a ``(proj_dim, K)`` matrix of unit-length
  columns; the scores are the plain products ``z @ prototypes``. After every optimizer
  update ``project_params`` scales each column back to unit length (the train step calls
  it), as the authors' ``w.data = normalize(w.data)`` before each step; the columns start
  at unit length. A training loop of your own must call ``method.project_params`` after
  each update too.
- **Frozen prototypes**: for the first ``freeze_prototypes_steps`` steps the prototypes get
  an exactly zero gradient (``jnp.where(frozen, stop_gradient(w), w)``), the authors'
  ``freeze_prototypes_niters``. The optimizer may still apply weight decay to them, which
  changes their length only, and ``project_params`` restores it.
- **Queue** (``queue_length > 0``, :mod:`ssl_jax.methods.queue`): ``method_state["queue"]``
  ``(2, Q, proj_dim)`` holds the normalised projections of the two global crops of the last
  ``Q / batch`` steps, FIFO. From step ``queue_start_step`` on, ``loss`` pushes its
  projections; once ``Q`` rows are filled the queue's scores, recomputed with the current
  prototypes, join the batch in Sinkhorn (the authors start an empty queue at
  ``epoch_queue_starts`` and use it once full). ``Q`` must be a multiple of the global batch
  size. The queue is one global array filled with the whole global batch: the authors'
  per-GPU queues of ``Q / world`` rows together hold exactly these rows.
- **Collapse**: ``prediction_entropy`` (metric) is the mean entropy of the predictions
  ``softmax(scores / temperature)``; at ``ln K`` every image predicts the same uniform
  distribution and the loss sits at ``ln K`` (the authors' README: "loss stuck at 8.006").
  ``diagnose`` then warns (:mod:`ssl_jax.methods.collapse`).
- ``loss`` reads the global ``step`` it is given to know the freeze and queue phases.

https://arxiv.org/abs/2006.09882 ; code: https://github.com/facebookresearch/swav
"""

import jax
import jax.numpy as jnp

from ssl_jax.losses import l2_normalize, swav_codes, swav_loss
from ssl_jax.method import MULTICROP, Method, method_factory, no_state_update
from ssl_jax.methods.collapse import mean_entropy, uniform_collapse_check
from ssl_jax.methods.common import embedding_std, online_export
from ssl_jax.methods.networks import embed_crops, init_parts, mlp_head
from ssl_jax.methods.queue import check_queue_length, make_queue, push

NUM_ASSIGNED = 2  # the authors' crops_for_assign = [0, 1]: the two global crops


@method_factory("swav", views=MULTICROP)
def make_swav(
    backbone,
    views,
    *,
    temperature: float = 0.1,
    proj_hidden_dim: int = 2048,
    proj_dim: int = 128,
    num_prototypes: int = 3000,
    sinkhorn_epsilon: float = 0.05,
    sinkhorn_iters: int = 3,
    queue_length: int = 0,
    queue_start_step: int = 0,
    freeze_prototypes_steps: int = 0,
    batch_size: int | None = None,
) -> Method:
    """SwAV on ``backbone`` and the multi-crop function ``views(images_uint8, key) ->
    (global_crops, local_crops)`` (two global crops).

    The defaults are the authors' (``main_swav.py``) except the queue, which is off
    (``queue_length=0``). A queue's length must be a multiple of the global batch: checked
    against ``batch_size`` when given (a ``ValueError`` naming valid lengths; the authors
    round it down instead), else when the loss is traced.
    """
    temperature = float(temperature)
    num_prototypes = int(num_prototypes)
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, proj_dim),
    }
    queue_length = int(queue_length)
    if queue_length:
        queue_length = check_queue_length(queue_length, batch_size, "SwAV")
    queue_start = int(queue_start_step)
    freeze_steps = int(freeze_prototypes_steps)
    codes_fn = lambda scores, **kw: swav_codes(
        scores, epsilon=sinkhorn_epsilon, num_iters=int(sinkhorn_iters), **kw
    )

    def init(key):
        key, proto_key = jax.random.split(key)
        params, stats = init_parts(parts, key)
        params["prototypes"] = l2_normalize(
            jax.random.normal(proto_key, (proj_dim, num_prototypes)), axis=0
        )
        state = {"batch_stats": stats}
        if queue_length:
            state.update(make_queue(NUM_ASSIGNED, queue_length, proj_dim, count=True))
        return params, state

    def loss(params, method_state, batch, key, step, frozen):
        del frozen
        globals_, locals_ = (tuple(crops) for crops in views(batch["images"], key))
        if len(globals_) != NUM_ASSIGNED:
            raise ValueError(f"SwAV needs {NUM_ASSIGNED} global crops, got {len(globals_)}.")
        num_crops = NUM_ASSIGNED + len(locals_)
        n = globals_[0].shape[0]
        z, stats = embed_crops(
            parts, "projector", params, method_state["batch_stats"], globals_ + locals_
        )
        z = l2_normalize(z, axis=-1)
        w = params["prototypes"]
        if freeze_steps:
            w = jnp.where(step < freeze_steps, jax.lax.stop_gradient(w), w)
        scores = (z @ w).reshape(num_crops, n, num_prototypes)
        assigned = jax.lax.stop_gradient(scores[:NUM_ASSIGNED])
        new_state = {**method_state, "batch_stats": stats}
        metrics = {
            "embedding_std": embedding_std(z),
            "prediction_entropy": mean_entropy(jax.lax.stop_gradient(scores) / temperature),
        }
        if queue_length:
            queue = method_state["queue"]
            use_queue = method_state["queue_count"] >= queue_length
            codes = jax.lax.cond(
                use_queue,
                lambda: codes_fn(assigned, queue_scores=queue @ jax.lax.stop_gradient(w)),
                lambda: codes_fn(assigned),
            )
            embeddings = jax.lax.stop_gradient(z[: NUM_ASSIGNED * n]).reshape(NUM_ASSIGNED, n, -1)
            new_state.update(push(method_state, embeddings, active=step >= queue_start))
            metrics["queue_in_use"] = use_queue.astype(jnp.float32)
        else:
            codes = codes_fn(assigned)
        value = swav_loss(scores, jax.lax.stop_gradient(codes), temperature=temperature)
        return value, (new_state, metrics)

    diagnose = uniform_collapse_check(
        "prediction_entropy",
        num_prototypes,
        "SwAV",
        "The SwAV authors' remedies: a lower method.sinkhorn_epsilon (0.03), prototypes frozen "
        "for the first steps (method.freeze_prototypes_steps), softer views (augment crop "
        "scale, jitter_prob, fewer local crops), a later or shorter queue.",
    )

    def project_params(params):
        return {**params, "prototypes": l2_normalize(params["prototypes"], axis=0)}

    return Method(
        name="swav", init=init, loss=loss, update_state=no_state_update, export=online_export,
        backbone=backbone, diagnose=diagnose, project_params=project_params,
        batch_terms="Sinkhorn-Knopp spreads the batch's codes equally over the prototypes",
    )  # fmt: skip
