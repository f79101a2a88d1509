"""Self-distillation losses: DINO cross-entropy, teacher centering and temperature schedule."""

import numbers

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from ssl_jax.explicit_sharding import replicated_result


def _check_positive(fn: str, name: str, value) -> None:
    if isinstance(value, numbers.Real) and value <= 0:
        raise ValueError(f"{fn} needs {name} > 0, got {value}.")


def dino_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    center: ArrayLike,
    *,
    student_temp: float = 0.1,
    teacher_temp: float | ArrayLike = 0.04,
) -> jax.Array:
    r"""DINO cross-entropy between centred, sharpened teacher and student outputs.

    The teacher sees the ``T`` global crops, the student all ``S`` crops, and the first
    ``T`` student crops are the same global crops in the same order. With teacher
    probabilities and student log-probabilities

    .. math::
        q_t = \operatorname{softmax}\!\Big(\frac{g_t - c}{\tau_t}\Big), \qquad
        \log p_s = \operatorname{log\,softmax}\!\Big(\frac{f_s}{\tau_s}\Big),

    the loss averages the cross-entropy over every (teacher crop, student crop) pair
    except a crop with itself:

    .. math::
        L = \frac{1}{T(S-1)} \sum_{t=1}^{T} \sum_{s \ne t}
            \frac{1}{N} \sum_{n=1}^{N} \sum_{k=1}^{K} -q_{t,n,k} \log p_{s,n,k}

    (DINO eq. 3 and the authors' ``DINOLoss.forward``: each pair's term is a batch mean,
    the sum over pairs is divided by the number of pairs). Local crops are smaller images
    but give logits of the same ``(N, K)`` shape, so all crops stack into one array.

    Gradients flow to every input: the caller must wrap ``teacher_logits`` (the teacher's
    outputs) and ``center`` in ``jax.lax.stop_gradient``, as the authors' ``detach()`` does.
    Update the center afterwards with :func:`dino_center_update`.

    Args:
      student_logits: ``(S, N, K)`` student head outputs, global crops first.
      teacher_logits: ``(T, N, K)`` teacher head outputs for the ``T <= S`` global crops.
      center: ``(K,)`` running mean of the teacher outputs.
      student_temp: :math:`\tau_s > 0`.
      teacher_temp: :math:`\tau_t > 0`; may be a traced scalar from
        :func:`dino_teacher_temperature`.

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> student = jnp.zeros((4, 2, 8))  # 2 global + 2 local crops, batch 2, 8 outputs
      >>> teacher = jnp.zeros((2, 2, 8))
      >>> round(float(dino_loss(student, teacher, jnp.zeros(8))), 4)  # log 8
      2.0794

    References:
      Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
      ICCV 2021. https://arxiv.org/abs/2104.14294 ; code:
      https://github.com/facebookresearch/dino (``main_dino.py``, ``DINOLoss``).
    """
    student = jnp.asarray(student_logits)
    teacher = jnp.asarray(teacher_logits)
    center = jnp.asarray(center)
    if student.ndim != 3 or teacher.ndim != 3:
        raise ValueError(
            "dino_loss expects student_logits (crops, batch, outputs) and teacher_logits "
            f"(global crops, batch, outputs), got shapes {student.shape} and {teacher.shape}."
        )
    num_student, n, k = student.shape
    num_teacher = teacher.shape[0]
    if teacher.shape[1:] != (n, k):
        raise ValueError(
            "dino_loss expects student and teacher logits with the same (batch, outputs), "
            f"got {student.shape} and {teacher.shape}."
        )
    if not 1 <= num_teacher <= num_student or num_student < 2:
        raise ValueError(
            "dino_loss needs 1 <= T <= S teacher crops and S >= 2 student crops (the first T "
            f"student crops are the teacher's global crops), got T={num_teacher}, S={num_student}."
        )
    if center.shape != (k,):
        raise ValueError(f"dino_loss expects center of shape ({k},), got {center.shape}.")
    _check_positive("dino_loss", "student_temp", student_temp)
    _check_positive("dino_loss", "teacher_temp", teacher_temp)

    dtype = jnp.promote_types(jnp.result_type(student, teacher, center), jnp.float32)
    q = jax.nn.softmax((teacher.astype(dtype) - center.astype(dtype)) / teacher_temp, axis=-1)
    return dino_cross_entropy(student.astype(dtype), q, student_temp=student_temp)


def dino_cross_entropy(
    student_logits: ArrayLike, teacher_probs: ArrayLike, *, student_temp: float = 0.1
) -> jax.Array:
    r""":func:`dino_loss` given the teacher's target distributions :math:`q` ``(T, N, K)``
    instead of its logits: the mean over the ``T (S - 1)`` pairs of a teacher crop and another
    student crop of the batch-mean cross-entropy. DINOv2 calls it with Sinkhorn-Knopp targets
    (:func:`~ssl_jax.losses.sinkhorn_knopp` of the teacher's logits at the teacher
    temperature, ``centering="sinkhorn_knopp"``); its global-crop term compares each student
    global crop with the other teacher crop and its local term every local crop with both,
    divided by the same ``T (S - 1)`` pairs, which is this sum.
    ``student_logits`` ``(S, N, K)``, global crops first; a scalar."""
    student = jnp.asarray(student_logits)
    q = jnp.asarray(teacher_probs)
    if student.ndim != 3 or q.ndim != 3 or q.shape[1:] != student.shape[1:]:
        raise ValueError(
            "dino_cross_entropy expects student_logits (S, N, K) and teacher_probs (T, N, K), "
            f"got {student.shape} and {q.shape}."
        )
    num_student, n, _ = student.shape
    num_teacher = q.shape[0]
    if not 1 <= num_teacher <= num_student or num_student < 2:
        raise ValueError(
            f"dino_cross_entropy needs 1 <= T <= S and S >= 2, got T={num_teacher}, "
            f"S={num_student}."
        )
    _check_positive("dino_cross_entropy", "student_temp", student_temp)
    dtype = jnp.promote_types(jnp.result_type(student, q), jnp.float32)
    q = q.astype(dtype)
    log_p = jax.nn.log_softmax(student.astype(dtype) / student_temp, axis=-1)
    # Batch-mean cross-entropy of every (teacher crop t, student crop s) pair, shape (T, S).
    cross_entropy = -jnp.einsum(
        "tnk,snk->ts",
        q,
        log_p,
        precision=jax.lax.Precision.HIGHEST,
        out_sharding=replicated_result(q, log_p),
    )
    cross_entropy = cross_entropy / n
    same_crop = jnp.eye(num_teacher, num_student, dtype=bool)
    total = jnp.sum(jnp.where(same_crop, 0.0, cross_entropy))
    return total / (num_teacher * (num_student - 1))


def dino_center_update(
    center: ArrayLike, teacher_logits: ArrayLike, *, momentum: float = 0.9
) -> jax.Array:
    r"""EMA of the teacher outputs, the center subtracted in :func:`dino_loss`.

    .. math::
        c \leftarrow m\,c + (1 - m)\,\frac{1}{TN} \sum_{t=1}^{T} \sum_{n=1}^{N} g_{t,n}

    The batch mean runs over all global crops of the global batch (the authors sum the
    concatenated crops and ``all_reduce`` over devices before dividing by ``T * N``; under
    a global-view ``jax.jit`` the batch axis already spans all devices).

    Args:
      center: ``(K,)`` current center.
      teacher_logits: ``(T, N, K)`` teacher outputs (any ``(..., K)`` with at least two
        axes works: the mean runs over all but the last).
      momentum: :math:`m \in [0, 1]`; the authors use 0.9.

    Returns:
      ``(K,)`` new center, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> dino_center_update(jnp.zeros(3), jnp.ones((2, 4, 3)), momentum=0.9)
      Array([0.1, 0.1, 0.1], dtype=float32)

    References:
      Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
      ICCV 2021, eq. 4. https://arxiv.org/abs/2104.14294
    """
    center = jnp.asarray(center)
    teacher = jnp.asarray(teacher_logits)
    if center.ndim != 1 or teacher.ndim < 2 or teacher.shape[-1] != center.shape[0]:
        raise ValueError(
            "dino_center_update expects center (K,) and teacher_logits (T, N, K), "
            f"got {center.shape} and {teacher.shape}."
        )
    if isinstance(momentum, numbers.Real) and not 0 <= momentum <= 1:
        raise ValueError(f"dino_center_update needs 0 <= momentum <= 1, got {momentum}.")
    dtype = jnp.promote_types(jnp.result_type(center, teacher), jnp.float32)
    batch_center = jnp.mean(teacher.astype(dtype), axis=tuple(range(teacher.ndim - 1)))
    return momentum * center.astype(dtype) + (1 - momentum) * batch_center


def dino_teacher_temperature(
    step: ArrayLike,
    *,
    warmup_teacher_temp: float = 0.04,
    teacher_temp: float = 0.04,
    warmup_steps: int,
    total_steps: int,
) -> jax.Array:
    r"""Teacher temperature: linear warm-up, then constant.

    Over the first ``warmup_steps`` steps the temperature goes linearly from
    ``warmup_teacher_temp`` (at step 0) to ``teacher_temp`` (at step ``warmup_steps - 1``),
    like the authors' ``np.linspace(warmup_teacher_temp, teacher_temp, warmup_epochs)``,
    and stays at ``teacher_temp`` after that:

    .. math::
        \tau_t(i) = \begin{cases}
            \tau_0 + (\tau_1 - \tau_0)\, i / \max(W - 1, 1) & i < W, \\
            \tau_1 & i \ge W.
        \end{cases}

    The authors index their schedule by epoch; this one by step (``step`` may be traced,
    so it can be computed inside a jitted train step). Steps past ``total_steps`` keep
    the final value instead of indexing past the end of a table.

    Args:
      step: integer training step, starting at 0.
      warmup_teacher_temp: :math:`\tau_0`, the temperature at step 0 (paper: 0.04).
      teacher_temp: :math:`\tau_1`, the temperature after warm-up (paper: 0.04 to 0.07).
      warmup_steps: :math:`W \ge 0` (paper: 30 epochs' worth of steps).
      total_steps: length of training, at least ``warmup_steps``.

    Returns:
      Scalar float32 temperature.

    Examples:
      >>> temp = lambda i: dino_teacher_temperature(
      ...     i, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_steps=11, total_steps=100)
      >>> [round(float(temp(i)), 4) for i in (0, 5, 10, 50)]
      [0.04, 0.055, 0.07, 0.07]

    References:
      Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
      ICCV 2021, sec. 3.1 and appendix. https://arxiv.org/abs/2104.14294
    """
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            "dino_teacher_temperature needs 0 <= warmup_steps <= total_steps, got "
            f"warmup_steps={warmup_steps}, total_steps={total_steps}."
        )
    _check_positive("dino_teacher_temperature", "warmup_teacher_temp", warmup_teacher_temp)
    _check_positive("dino_teacher_temperature", "teacher_temp", teacher_temp)
    step = jnp.asarray(step, jnp.float32)
    frac = jnp.clip(step / max(warmup_steps - 1, 1), 0.0, 1.0)
    warm = warmup_teacher_temp + (teacher_temp - warmup_teacher_temp) * frac
    return jnp.where(step < warmup_steps, warm, jnp.float32(teacher_temp))


def ibot_patch_loss(
    student_patch_logits: ArrayLike,
    teacher_patch_logits: ArrayLike,
    center: ArrayLike,
    mask: ArrayLike,
    *,
    student_temp: float = 0.1,
    teacher_temp: float | ArrayLike = 0.07,
) -> jax.Array:
    r"""iBOT's masked-image-modelling loss: the student's patch outputs at the masked positions
    of each global crop against the teacher's centred, sharpened outputs for the same patches
    of the same crop, unmasked.

    With :math:`q = \operatorname{softmax}((g - c) / \tau_t)` and
    :math:`\log p = \operatorname{log\,softmax}(f / \tau_s)` per patch, and :math:`m` the mask,

    .. math::
        L = \frac{1}{T} \sum_{t=1}^{T} \frac{1}{N} \sum_{n=1}^{N}
            \frac{\sum_l m_{t,n,l} \sum_k -q_{t,n,l,k} \log p_{t,n,l,k}}
                 {\max(1, \sum_l m_{t,n,l})}

    (iBOT eq. 2 and the authors' ``iBOTLoss.forward``: each image's cross-entropies are
    averaged over its masked patches, an image without masked patches contributes 0 but still
    counts in the batch mean, and the ``T`` crops' terms are averaged). The teacher sees the
    crop without masks, the student with them; crop ``t`` of the student is compared with crop
    ``t`` of the teacher only.

    Gradients flow to every input: wrap the teacher's logits and ``center`` in
    ``jax.lax.stop_gradient``. The center is updated as DINO's, over every patch of every
    global crop: :func:`dino_center_update` on the ``(T, N, L, K)`` teacher logits (the
    authors' ``center2``).

    Args:
      student_patch_logits: ``(T, N, L, K)`` student head outputs for the patch tokens.
      teacher_patch_logits: ``(T, N, L, K)`` teacher head outputs for the same crops.
      center: ``(K,)`` running mean of the teacher patch outputs.
      mask: ``(T, N, L)`` bool, ``True`` at the patches the student saw masked.
      student_temp: :math:`\tau_s > 0` (0.1).
      teacher_temp: :math:`\tau_t > 0` (iBOT: 0.04 warmed up to 0.07); may be traced.

    Returns:
      Scalar loss, float32 (float64 for float64 inputs).

    Examples:
      >>> import jax.numpy as jnp
      >>> logits = jnp.zeros((2, 3, 4, 8))  # 2 crops, batch 3, 4 patches, 8 outputs
      >>> mask = jnp.ones((2, 3, 4), bool)
      >>> round(float(ibot_patch_loss(logits, logits, jnp.zeros(8), mask)), 4)  # log 8
      2.0794

    References:
      Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022.
      https://arxiv.org/abs/2111.07832 ; code: https://github.com/bytedance/ibot
      (``main_ibot.py``, ``iBOTLoss``).
    """
    student = jnp.asarray(student_patch_logits)
    teacher = jnp.asarray(teacher_patch_logits)
    center = jnp.asarray(center)
    mask = jnp.asarray(mask)
    if student.ndim != 4 or student.shape != teacher.shape:
        raise ValueError(
            "ibot_patch_loss expects student and teacher patch logits of one shape (crops, "
            f"batch, patches, outputs), got {student.shape} and {teacher.shape}."
        )
    if mask.shape != student.shape[:3] or mask.dtype != jnp.bool_:
        raise ValueError(
            f"ibot_patch_loss expects a bool mask of shape {student.shape[:3]} (crops, batch, "
            f"patches), got {mask.dtype} of shape {mask.shape}."
        )
    if center.shape != (student.shape[-1],):
        raise ValueError(
            f"ibot_patch_loss expects center of shape ({student.shape[-1]},), got {center.shape}."
        )
    _check_positive("ibot_patch_loss", "student_temp", student_temp)
    _check_positive("ibot_patch_loss", "teacher_temp", teacher_temp)
    dtype = jnp.promote_types(jnp.result_type(student, teacher, center), jnp.float32)
    q = jax.nn.softmax((teacher.astype(dtype) - center.astype(dtype)) / teacher_temp, axis=-1)
    return masked_patch_cross_entropy(student.astype(dtype), q, mask, student_temp=student_temp)


def masked_patch_cross_entropy(
    student_patch_logits: ArrayLike,
    teacher_patch_probs: ArrayLike,
    mask: ArrayLike,
    *,
    student_temp: float = 0.1,
) -> jax.Array:
    r""":func:`ibot_patch_loss` given the teacher's target distributions ``(T, N, L, K)``
    (only their masked entries matter) instead of its logits: the per-image mean over the
    masked patches of the cross-entropy, averaged over the ``T N`` images (DINOv2's
    ``iBOTPatchLoss.forward_masked`` with its default weights ``1 / max(1, #masked)``; its
    ``* 2 / 2`` scales cancel). DINOv2 passes Sinkhorn-Knopp targets of the masked patches."""
    student = jnp.asarray(student_patch_logits)
    q = jnp.asarray(teacher_patch_probs)
    mask = jnp.asarray(mask)
    if (
        student.ndim != 4
        or q.shape != student.shape
        or mask.shape != student.shape[:3]
        or mask.dtype != jnp.bool_
    ):
        raise ValueError(
            "masked_patch_cross_entropy expects (T, N, L, K) student logits and teacher "
            f"probabilities and a (T, N, L) bool mask, got {student.shape}, {q.shape}, "
            f"{mask.dtype} {mask.shape}."
        )
    _check_positive("masked_patch_cross_entropy", "student_temp", student_temp)
    dtype = jnp.promote_types(jnp.result_type(student, q), jnp.float32)
    q = q.astype(dtype)
    log_p = jax.nn.log_softmax(student.astype(dtype) / student_temp, axis=-1)
    cross_entropy = -jnp.sum(jnp.where(mask[..., None], q * log_p, 0.0), axis=-1)  # (T, N, L)
    weights = mask.astype(dtype)
    per_image = jnp.sum(cross_entropy * weights, axis=-1) / jnp.maximum(
        jnp.sum(weights, axis=-1), 1.0
    )
    return jnp.mean(per_image)
