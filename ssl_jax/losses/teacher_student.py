"""Teacher-to-student distillation losses: softened-output KL (Hinton et al.), embedding
regression, similarity-distribution matching (SEED) and a DINO-family teacher's prototype
distribution (DINOv2's distillation).

Each takes the student's outputs first and the teacher's second; the teacher is frozen, so the
caller passes its outputs through ``jax.lax.stop_gradient`` (or computes them outside the
differentiated function, as a frozen input): gradients here flow to the student's argument
only when the teacher's carries none.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ssl_jax.losses.clustering import sinkhorn_knopp
from ssl_jax.losses.normalize import l2_normalize


def _check_pair(fn: str, student: jax.Array, teacher: jax.Array) -> None:
    if student.ndim != 2 or student.shape != teacher.shape:
        raise ValueError(
            f"{fn} needs student and teacher outputs of one shape (N, D), got {student.shape} "
            f"and {teacher.shape}."
        )


def _check_temperature(fn: str, name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{fn} needs {name} > 0, got {value}.")


def kd_loss(student_logits: ArrayLike, teacher_logits: ArrayLike, *, temperature: float = 4.0):
    r"""Knowledge distillation (Hinton, Vinyals, Dean 2015): the KL divergence from the
    teacher's temperature-softened distribution to the student's, scaled by :math:`T^2`.

    .. math::
        L = \frac{T^2}{N} \sum_{n} \sum_k p_{n,k} (\log p_{n,k} - \log q_{n,k}),\quad
        p = \mathrm{softmax}(t / T),\; q = \mathrm{softmax}(s / T)

    The :math:`T^2` keeps the gradients' scale independent of the temperature (the paper,
    section 2). Shapes: ``(N, K)`` logits of each; returns a float32 scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> float(kd_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3))))  # same distributions
      0.0
    """
    s = jnp.asarray(student_logits, jnp.float32)
    t = jnp.asarray(teacher_logits, jnp.float32)
    _check_pair("kd_loss", s, t)
    _check_temperature("kd_loss", "temperature", temperature)
    log_p = jax.nn.log_softmax(t / temperature, axis=-1)
    log_q = jax.nn.log_softmax(s / temperature, axis=-1)
    kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
    return temperature**2 * jnp.mean(kl)


def embedding_mse(student: ArrayLike, teacher: ArrayLike) -> jax.Array:
    r"""Embedding regression: the mean over the batch of the squared Euclidean distance
    :math:`\frac{1}{N} \sum_n \lVert s_n - t_n \rVert^2` between the student's projection and the
    teacher's embedding, both ``(N, D)``. Known to distil self-supervised embeddings poorly
    (SEED, section 4; CompRess), the baseline the other losses are compared with."""
    s = jnp.asarray(student, jnp.float32)
    t = jnp.asarray(teacher, jnp.float32)
    _check_pair("embedding_mse", s, t)
    return jnp.mean(jnp.sum((s - t) ** 2, axis=-1))


def embedding_cosine(student: ArrayLike, teacher: ArrayLike) -> jax.Array:
    r"""Embedding regression on the sphere: :math:`\frac{1}{N} \sum_n (1 - \cos(s_n, t_n))`,
    for ``(N, D)`` student projections and teacher embeddings (0 when aligned, 2 opposite)."""
    s = jnp.asarray(student, jnp.float32)
    t = jnp.asarray(teacher, jnp.float32)
    _check_pair("embedding_cosine", s, t)
    return jnp.mean(1.0 - jnp.sum(l2_normalize(s) * l2_normalize(t), axis=-1))


def seed_loss(
    student: ArrayLike,
    teacher: ArrayLike,
    queue: ArrayLike,
    *,
    student_temperature: float = 0.2,
    teacher_temperature: float = 0.01,
) -> jax.Array:
    r"""SEED (Fang et al. 2021): cross-entropy between the teacher's and the student's softmax
    similarity distributions over a queue of teacher embeddings plus the teacher's embedding of
    the same image.

    With L2-normalised rows, the anchors of example :math:`n` are :math:`D_n^+ = [d_1, \dots,
    d_K, t_n]` (the ``(K, D)`` queue and the teacher's own embedding) and

    .. math::
        p^T_{n,j} = \mathrm{softmax}_j(t_n \cdot d_j / \tau_T),\quad
        p^S_{n,j} = \mathrm{softmax}_j(s_n \cdot d_j / \tau_S),\quad
        L = -\frac{1}{N} \sum_n \sum_j p^T_{n,j} \log p^S_{n,j}

    (the paper's eq. 1-3; its code appends the teacher embedding as the last anchor). Defaults:
    the paper's :math:`\tau_S = 0.2` and :math:`\tau_T = 0.01`. Shapes: student and teacher
    ``(N, D)``, queue ``(K, D)``; a float32 scalar.
    """
    s = l2_normalize(jnp.asarray(student, jnp.float32))
    t = l2_normalize(jnp.asarray(teacher, jnp.float32))
    d = l2_normalize(jnp.asarray(queue, jnp.float32))
    _check_pair("seed_loss", s, t)
    if d.ndim != 2 or d.shape[1] != s.shape[1]:
        raise ValueError(f"seed_loss needs a (K, {s.shape[1]}) queue, got {d.shape}.")
    _check_temperature("seed_loss", "student_temperature", student_temperature)
    _check_temperature("seed_loss", "teacher_temperature", teacher_temperature)
    own = jnp.sum(t * t, axis=-1, keepdims=True)  # t . t = 1 (kept as computed)
    teacher_logits = jnp.concatenate([t @ d.T, own], axis=-1) / teacher_temperature
    student_logits = jnp.concatenate([s @ d.T, jnp.sum(s * t, axis=-1, keepdims=True)], axis=-1)
    p_teacher = jax.nn.softmax(teacher_logits, axis=-1)
    log_p_student = jax.nn.log_softmax(student_logits / student_temperature, axis=-1)
    return -jnp.mean(jnp.sum(p_teacher * log_p_student, axis=-1))


def prototype_kd_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    center: ArrayLike | None = None,
    *,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
    sinkhorn_iters: int = 0,
) -> jax.Array:
    r"""Cross-entropy from a frozen DINO-family teacher's prototype distribution to the
    student's, the loss of DINOv2's distillation (Oquab et al. 2023, section 5) on one view:

    .. math::
        q = \mathrm{softmax}\Big(\frac{t - c}{\tau_t}\Big),\quad
        L = -\frac{1}{N} \sum_n \sum_k q_{n,k} \log \mathrm{softmax}_k
            \Big(\frac{s_n}{\tau_s}\Big)_k

    with the teacher's exported ``center`` :math:`c` (DINO's centering); with
    ``center=None`` and ``sinkhorn_iters >= 1``, :math:`q` is instead
    :func:`~ssl_jax.losses.sinkhorn_knopp` of :math:`t` at :math:`\varepsilon = \tau_t` over
    the batch (DINOv2's ``SinkhornKnoppTeacher``). ``student_logits`` and ``teacher_logits``:
    ``(N, K)`` head outputs; the caller stops the teacher's gradient. A float32 scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> round(float(prototype_kd_loss(jnp.zeros((2, 8)), jnp.zeros((2, 8)), jnp.zeros(8))), 4)
      2.0794
    """
    s = jnp.asarray(student_logits, jnp.float32)
    t = jnp.asarray(teacher_logits, jnp.float32)
    _check_pair("prototype_kd_loss", s, t)
    _check_temperature("prototype_kd_loss", "student_temp", student_temp)
    _check_temperature("prototype_kd_loss", "teacher_temp", teacher_temp)
    if center is None:
        if sinkhorn_iters < 1:
            raise ValueError(
                "prototype_kd_loss needs a center (DINO's centering) or sinkhorn_iters >= 1 "
                "(DINOv2's Sinkhorn-Knopp centering)."
            )
        q = sinkhorn_knopp(t, epsilon=teacher_temp, num_iters=sinkhorn_iters)
    else:
        c = jnp.asarray(center, jnp.float32)
        if c.shape != t.shape[-1:]:
            raise ValueError(f"prototype_kd_loss needs a ({t.shape[-1]},) center, got {c.shape}.")
        if sinkhorn_iters:
            raise ValueError("prototype_kd_loss takes a center or sinkhorn_iters, not both.")
        q = jax.nn.softmax((t - c) / teacher_temp, axis=-1)
    log_p = jax.nn.log_softmax(s / student_temp, axis=-1)
    return -jnp.mean(jnp.sum(q * log_p, axis=-1))
