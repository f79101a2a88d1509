"""Optimizers and learning-rate schedules built from the ``optim``/``schedule`` config."""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax.config import scaled_learning_rate


def decay_mask(params) -> object:
    """True for weights that get weight decay and LARS adaptation, False for biases and norms.

    SimCLR/BYOL exclude biases and batch-norm parameters from both. Every parameter with
    fewer than two dimensions is a bias or a norm scale/offset in our models.
    """
    return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def make_schedule(
    config: ml_collections.ConfigDict, *, steps_per_epoch: int, total_steps: int
) -> optax.Schedule:
    """Linear warmup then cosine decay to ``end_lr_factor * peak`` (SimCLR, BYOL)."""
    peak = scaled_learning_rate(config.optim, config.data.batch_size)
    sched = config.schedule
    if sched.name == "warmup_cosine":
        warmup = min(int(round(sched.warmup_epochs * steps_per_epoch)), total_steps - 1)
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=peak,
            warmup_steps=max(warmup, 0),
            decay_steps=total_steps,
            end_value=peak * sched.end_lr_factor,
        )
    if sched.name == "constant":
        return optax.constant_schedule(peak)
    raise ValueError(f"schedule.name={sched.name!r} is not one of 'warmup_cosine', 'constant'.")


def clipped_lars_direction(
    trust_coefficient: float, weight_decay: float, learning_rate: optax.Schedule
) -> optax.GradientTransformation:
    """solo-learn's LARS with ``clip_lr``: weight decay and the clipped trust ratio, before the lr.

    For each tensor with weights ``w`` and gradient ``g`` the direction is
    ``d = (g + wd * w) * min(lambda / lr_t, 1)`` with the local learning rate of the LARS
    paper (You et al. 2017, eq. 6), ``lambda = eta * ||w|| / (||g|| + wd * ||w||)``. After
    the learning rate the tensor moves by ``min(lambda, lr_t) * (g + wd * w)``: the LARS step,
    never larger than plain SGD's. This is the "clip" mode of NVIDIA's LARC that solo-learn's
    LARS uses (``clip_lr=True``, ``eta=0.02``) in its CIFAR and ImageNet-100 recipes, with
    solo-learn's denominator ``||g|| + wd * ||w||`` (optax's unclipped LARS divides by
    ``||g + wd * w||`` instead). As in solo-learn, a tensor whose weights or gradient are all
    zero gets ``g`` unchanged (no decay, no scaling); a zero learning rate leaves ``d``
    unclipped (the step is zero anyway).
    """

    def init(params):
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params):
        lr = learning_rate(state.count)

        def direction(g, w):
            w_norm, g_norm = jnp.linalg.norm(w), jnp.linalg.norm(g)
            denominator = g_norm + weight_decay * w_norm
            local_lr = trust_coefficient * w_norm / jnp.where(denominator > 0, denominator, 1.0)
            factor = jnp.where(lr > 0, jnp.minimum(local_lr / jnp.where(lr > 0, lr, 1.0), 1.0), 1.0)
            scaled = (g + weight_decay * w) * factor.astype(g.dtype)
            return jnp.where((w_norm > 0) & (g_norm > 0), scaled, g)

        updates = jax.tree.map(direction, updates, params)
        return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def make_optimizer(
    optim: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """SGD with momentum, AdamW or LARS, with biases and norms excluded from decay if asked.

    LARS follows optax's order (decay, trust ratio, learning rate, momentum). Without
    ``optim.trust_clip`` it is ``optax.lars`` (trust ratio ``eta ||w|| / ||g + wd w||``, as
    BYOL's code); with it, solo-learn's :func:`clipped_lars_direction` (``eta ||w|| /
    (||g|| + wd ||w||)``, the LARS paper's form, clipped at the scheduled learning rate).
    """
    mask = decay_mask if optim.exclude_bias_and_norm else True
    if optim.name == "lars" and optim.get("trust_clip", False):
        direction = clipped_lars_direction(optim.trust_coefficient, optim.weight_decay, schedule)
        tx = optax.chain(
            optax.masked(direction, mask),
            optax.scale_by_learning_rate(schedule),
            optax.trace(decay=optim.momentum),
        )
    elif optim.name == "lars":
        tx = optax.lars(
            schedule,
            weight_decay=optim.weight_decay,
            weight_decay_mask=mask,
            trust_coefficient=optim.trust_coefficient,
            trust_ratio_mask=mask,
            momentum=optim.momentum,
        )
    elif optim.name == "sgd":
        tx = optax.chain(
            optax.add_decayed_weights(optim.weight_decay, mask=mask),
            optax.sgd(schedule, momentum=optim.momentum),
        )
    elif optim.name == "adamw":
        tx = optax.adamw(
            schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay, mask=mask
        )
    else:
        raise ValueError(f"optim.name={optim.name!r} is not one of 'lars', 'sgd', 'adamw'.")
    if optim.grad_clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
    return tx
