"""Distilling a frozen self-supervised teacher into a student: knowledge distillation of
categorical outputs (KD, Hinton et al. 2015, https://arxiv.org/abs/1503.02531), embedding
regression (MSE, cosine), similarity-distribution matching (SEED, Fang et al. 2021,
https://arxiv.org/abs/2101.04731) and a DINO-family teacher's prototype distribution
(``dino_kd``, DINOv2's distillation, Oquab et al. 2023, https://arxiv.org/abs/2304.07193).

The student (``backbone``) and a projector to the teacher's output width see one view of each
image; the teacher (:mod:`ssl_jax.methods.teacher`) sees the same view. The student's backbone
is the export. The teacher's embedding is its export's pooled features (projection heads are
not exported); KD's teacher outputs are the logits of the categorical head its export carries
(a fine-tuning run's); ``dino_kd``'s are the outputs of the prototype head a DINO, iBOT or
DINOv2 export carries, centred as the teacher centred them.
"""

import jax
import jax.numpy as jnp

from ssl_jax.export import convert_input
from ssl_jax.losses import (
    embedding_cosine,
    embedding_mse,
    kd_loss,
    l2_normalize,
    prototype_kd_loss,
    seed_loss,
)
from ssl_jax.method import ONE_RAW_VIEW, Method, method_factory, no_state_update
from ssl_jax.methods.common import make_init, online_export
from ssl_jax.methods.networks import apply_chain, dino_head
from ssl_jax.methods.pretext_task import one_view
from ssl_jax.methods.queue import check_queue_length, make_queue, push
from ssl_jax.methods.teacher import (
    load_teacher,
    make_teacher,
    student_parts,
    teacher_features,
    teacher_logits,
)


def _distill_method(
    name,
    parts,
    teacher,
    views,
    input_spec,
    objective,
    *,
    init=None,
    target=teacher_features,
    batch_terms="",
) -> Method:
    """A method whose ``objective(params, method_state, s, t, frozen) -> (loss, method_state,
    metrics)`` compares the student's projections ``s`` with the teacher's outputs ``t`` of one
    view (``target(teacher, arrays, x)``: its features, or its logits; ``frozen``: the
    teacher's arrays)."""

    def loss(params, method_state, batch, key, step, frozen):
        del step
        if frozen is None:
            raise ValueError(f"{name} needs the teacher's arrays as its frozen input.")
        x = one_view(views, batch["images"], key, name)
        t = target(teacher, frozen, x)
        s, stats = apply_chain(
            parts,
            ("backbone", "projector"),
            params,
            method_state["batch_stats"],
            convert_input(x, input_spec),
        )
        state = {**method_state, "batch_stats": stats}
        value, new_state, metrics = objective(params, state, s, t, frozen)
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
        load_frozen=lambda mesh, **_: load_teacher(teacher, mesh),
        input_spec=input_spec,
        batch_terms=batch_terms,
    )


@method_factory("kd", views=ONE_RAW_VIEW)
def make_kd(
    backbone,
    views,
    *,
    input_spec: dict,
    teacher: str,
    teacher_step: int | None = None,
    proj_hidden_dim: int = 2048,
    temperature: float = 4.0,
) -> Method:
    """Knowledge distillation: :func:`~ssl_jax.losses.kd_loss` (``T^2``-scaled KL from the
    teacher's softened distribution to the student's) between the student's projection to
    ``num_classes`` logits and the logits of the categorical head the teacher's export carries.
    A teacher without one (every pretraining export) is a ``ValueError`` naming the methods
    that distil embeddings instead."""
    teacher = make_teacher(teacher, teacher_step)
    if teacher.prototypes is not None:
        raise ValueError(
            f"method.name='kd' distils a categorical head, but the export of {teacher.path} "
            f"({teacher.spec['method']}, step {teacher.step}) carries a DINO-family prototype "
            "head: distil it with method.name='dino_kd' (configs/distill_cifar10.py:dino_kd)."
        )
    if teacher.head is None:
        raise ValueError(
            f"method.name='kd' distils a teacher's categorical outputs, but the export of "
            f"{teacher.path} ({teacher.spec['method']}, step {teacher.step}) has no categorical "
            "head (spec head: false). Pass a fine-tuning run as config.teacher "
            "(launch/finetune.py exports its head), a DINO, iBOT or DINOv2 run with dino_kd, "
            "or distil the embedding with mse, cosine or seed."
        )
    parts = student_parts(backbone, proj_hidden_dim, teacher.num_classes)

    def objective(params, method_state, s, t, frozen):
        agree = 100.0 * jnp.mean(jnp.argmax(s, -1) == jnp.argmax(t, -1))
        return kd_loss(s, t, temperature=temperature), method_state, {"teacher_top1": agree}

    return _distill_method(
        "kd", parts, teacher, views, input_spec, objective, target=teacher_logits
    )


def _make_regression(name, loss_fn, backbone, views, input_spec, teacher, teacher_step, hidden):
    teacher = make_teacher(teacher, teacher_step)
    parts = student_parts(backbone, hidden, teacher.feature_dim)

    def objective(params, method_state, s, t, frozen):
        return loss_fn(s, t), method_state, {}

    return _distill_method(name, parts, teacher, views, input_spec, objective)


@method_factory("mse", views=ONE_RAW_VIEW)
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


@method_factory("cosine", views=ONE_RAW_VIEW)
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


@method_factory("seed", views=ONE_RAW_VIEW)
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
    queue_length = check_queue_length(queue_length, batch_size, "SEED")
    teacher = make_teacher(teacher, teacher_step)
    parts = student_parts(backbone, proj_hidden_dim, teacher.feature_dim)
    init_parts = make_init(parts)

    def init(key):
        net_key, queue_key = jax.random.split(key)
        params, state = init_parts(net_key)
        queue = make_queue(1, queue_length, teacher.feature_dim, key=queue_key)
        return params, {**state, **queue}

    def objective(params, method_state, s, t, frozen):
        queue = method_state["queue"]
        value = seed_loss(
            s,
            t,
            queue[0],
            student_temperature=student_temperature,
            teacher_temperature=teacher_temperature,
        )
        return value, {**method_state, **push(method_state, l2_normalize(t)[None])}, {}

    terms = "its similarity distributions are over a queue of teacher embeddings, updated each step"
    return _distill_method(
        "seed", parts, teacher, views, input_spec, objective, init=init, batch_terms=terms
    )


@method_factory("dino_kd", views=ONE_RAW_VIEW)
def make_dino_kd(
    backbone,
    views,
    *,
    input_spec: dict,
    teacher: str,
    teacher_step: int | None = None,
    proj_hidden_dim: int = 2048,
    bottleneck_dim: int = 256,
    head_layers: int = 3,
    student_temp: float = 0.1,
) -> Method:
    """Distillation of a DINO / iBOT / DINOv2 teacher's [CLS] prototype distribution (DINOv2,
    section 5): the student (``backbone`` and a :class:`~ssl_jax.models.DINOHead` of
    ``head_layers`` layers, width ``proj_hidden_dim``, bottleneck ``bottleneck_dim``, to the
    teacher's ``out_dim`` prototypes) learns :func:`~ssl_jax.losses.prototype_kd_loss` from the
    teacher's head outputs, centred as the export says: its frozen center and teacher
    temperature, or Sinkhorn-Knopp over the batch at that temperature (DINOv2's). The
    teacher's head is the one its export carries (its spec head ``kind: "prototypes"``);
    pretrain it with ``export.network="target"`` to distil the EMA teacher, as DINOv2 does.
    """
    teacher = make_teacher(teacher, teacher_step)
    head = teacher.prototypes
    if head is None:
        raise ValueError(
            f"method.name='dino_kd' distils a DINO-family teacher's prototypes, but the export "
            f"of {teacher.path} ({teacher.spec['method']}, step {teacher.step}) has "
            f"{'a categorical head: use kd' if teacher.head else 'no head (spec head: false)'}. "
            "Pass a DINO, iBOT or DINOv2 pretraining run as config.teacher."
        )
    if not student_temp > 0:
        raise ValueError(f"method.student_temp must be > 0, got {student_temp}.")
    parts = {
        "backbone": backbone,
        "projector": dino_head(
            backbone.feature_dim,
            head["out_dim"],
            hidden_features=int(proj_hidden_dim),
            bottleneck_features=int(bottleneck_dim),
            num_layers=int(head_layers),
        ),
    }
    sinkhorn = head["centering"] == "sinkhorn_knopp"

    def objective(params, method_state, s, t, frozen):
        center = None if sinkhorn else jax.lax.stop_gradient(frozen["head"]["center"])
        value = prototype_kd_loss(
            s,
            t,
            center,
            student_temp=student_temp,
            teacher_temp=head["teacher_temp"],
            sinkhorn_iters=head["sinkhorn_iters"],
        )
        agree = 100.0 * jnp.mean(jnp.argmax(s, -1) == jnp.argmax(t, -1))
        return value, method_state, {"teacher_top1": agree}

    terms = "the teacher's Sinkhorn-Knopp targets are normalised over the batch" if sinkhorn else ""
    return _distill_method(
        "dino_kd",
        parts,
        teacher,
        views,
        input_spec,
        objective,
        target=teacher_logits,
        batch_terms=terms,
    )
