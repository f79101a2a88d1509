"""Distilling a frozen self-supervised teacher into a student: embedding regression (MSE,
cosine) and similarity-distribution matching (SEED, Fang et al. 2021,
https://arxiv.org/abs/2101.04731).

The student (``backbone``) and a projector to the teacher's feature width see one view of each
image; the teacher (:mod:`ssl_jax.methods.teacher`) sees the same view. The student's backbone
is the export. The teacher's embedding is its export's pooled features (projection heads are
not exported).
"""

import jax
import jax.numpy as jnp

from ssl_jax.encoder import convert_input
from ssl_jax.losses import embedding_cosine, embedding_mse, l2_normalize, seed_loss
from ssl_jax.methods.base import Method, no_state_update
from ssl_jax.methods.common import make_init, online_export
from ssl_jax.methods.networks import apply_chain, mlp_head
from ssl_jax.methods.pretext_task import one_view
from ssl_jax.methods.queue import enqueue
from ssl_jax.methods.teacher import load_teacher, make_teacher, teacher_features


def _student_and_teacher(backbone, teacher_path, teacher_step, proj_hidden_dim):
    teacher = make_teacher(teacher_path, teacher_step)
    parts = {
        "backbone": backbone,
        "projector": mlp_head(backbone.feature_dim, proj_hidden_dim, teacher.feature_dim),
    }
    return teacher, parts


def _distill_method(name, parts, teacher, views, input_spec, objective, *, init=None) -> Method:
    """A method whose ``objective(params, method_state, s, t) -> (loss, method_state, metrics)``
    compares the student's projections ``s`` with the teacher's features ``t`` of one view."""

    def loss(params, method_state, batch, key, step, frozen):
        del step
        if frozen is None:
            raise ValueError(f"{name} needs the teacher's arrays as its frozen input.")
        x = one_view(views, batch["images"], key, name)
        t = teacher_features(teacher, frozen, x)
        s, stats = apply_chain(
            parts,
            ("backbone", "projector"),
            params,
            method_state["batch_stats"],
            convert_input(x, input_spec),
        )
        value, new_state, metrics = objective(params, {**method_state, "batch_stats": stats}, s, t)
        cosine = jnp.mean(jnp.sum(l2_normalize(s) * l2_normalize(t), axis=-1))
        return value, (new_state, {"teacher_cosine": cosine, **metrics})

    return Method(
        name=name,
        init=init or make_init(parts),
        loss=loss,
        update_state=no_state_update,
        export=online_export,
        backbone=parts["backbone"],
        network="student",
        load_frozen=lambda mesh: load_teacher(teacher, mesh),
        input_spec=input_spec,
    )


def _make_regression(name, loss_fn, backbone, views, input_spec, teacher, teacher_step, hidden):
    teacher, parts = _student_and_teacher(backbone, teacher, teacher_step, hidden)

    def objective(params, method_state, s, t):
        return loss_fn(s, t), method_state, {}

    return _distill_method(name, parts, teacher, views, input_spec, objective)


def make_mse(
    backbone,
    views,
    *,
    input_spec: dict,
    teacher: str,
    teacher_step: int | None = None,
    proj_hidden_dim: int = 2048,
) -> Method:
    """Embedding regression: :func:`~ssl_jax.losses.embedding_mse` between the student's
    projection and the teacher's features (``teacher``: a run directory)."""
    return _make_regression(
        "mse", embedding_mse, backbone, views, input_spec, teacher, teacher_step, proj_hidden_dim
    )


def make_cosine(
    backbone,
    views,
    *,
    input_spec: dict,
    teacher: str,
    teacher_step: int | None = None,
    proj_hidden_dim: int = 2048,
) -> Method:
    """Embedding regression on the sphere: :func:`~ssl_jax.losses.embedding_cosine`."""
    return _make_regression(
        "cosine", embedding_cosine, backbone, views, input_spec, teacher, teacher_step,
        proj_hidden_dim,
    )  # fmt: skip


def make_seed(
    backbone,
    views,
    *,
    input_spec: dict,
    teacher: str,
    teacher_step: int | None = None,
    batch_size: int | None = None,
    proj_hidden_dim: int = 2048,
    queue_length: int = 65536,
    student_temperature: float = 0.2,
    teacher_temperature: float = 0.01,
) -> Method:
    """SEED: :func:`~ssl_jax.losses.seed_loss` of the student's projection and the teacher's
    features over a FIFO queue of ``queue_length`` earlier teacher features (L2-normalised,
    randomly initialised on the sphere, as the authors'; a multiple of the global batch
    ``batch_size``), pushed after each step's loss."""
    if batch_size and queue_length % batch_size:
        raise ValueError(
            f"method.queue_length={queue_length} is not a multiple of data.batch_size="
            f"{batch_size}: each step enqueues the teacher features of the whole batch."
        )
    teacher, parts = _student_and_teacher(backbone, teacher, teacher_step, proj_hidden_dim)
    init_parts = make_init(parts)

    def init(key):
        net_key, queue_key = jax.random.split(key)
        params, state = init_parts(net_key)
        queue = l2_normalize(jax.random.normal(queue_key, (1, queue_length, teacher.feature_dim)))
        return params, {**state, "queue": queue, "queue_ptr": jnp.zeros((), jnp.int32)}

    def objective(params, method_state, s, t):
        queue = method_state["queue"]
        value = seed_loss(
            s,
            t,
            queue[0],
            student_temperature=student_temperature,
            teacher_temperature=teacher_temperature,
        )
        new_queue, new_ptr = enqueue(queue, method_state["queue_ptr"], l2_normalize(t)[None])
        return value, {**method_state, "queue": new_queue, "queue_ptr": new_ptr}, {}

    return _distill_method("seed", parts, teacher, views, input_spec, objective, init=init)
