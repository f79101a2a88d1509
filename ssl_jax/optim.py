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


def scale_by_clipped_trust_ratio(
    trust_coefficient: float, learning_rate: optax.Schedule
) -> optax.GradientTransformation:
    """LARS's trust ratio with the effective learning rate clipped at the scheduled one.

    Each tensor's update ``u`` (gradient plus weight decay) is scaled by
    ``min(eta * ||w|| / ||u||, lr_t) / lr_t``, so that after the learning rate the tensor
    moves by ``min(eta * ||w|| / ||u||, lr_t) * u``: the LARS step, but never larger than
    plain SGD's. This is the "clip" mode of NVIDIA's LARC that solo-learn's LARS uses
    (``clip_lr=True``, ``eta=0.02``) in its CIFAR and ImageNet-100 recipes. solo-learn divides
    by ``||g|| + wd * ||w||`` where this divides by ``||g + wd * w||`` (as optax's LARS
    does); with their weight decays (1e-6 to 1e-4) the two differ by less than 0.01%.
    A tensor with a zero norm (or a zero update) is not rescaled, as in optax.
    """

    def init(params):
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params):
        lr = learning_rate(state.count)

        def scale(u, p):
            p_norm, u_norm = jnp.linalg.norm(p), jnp.linalg.norm(u)
            ratio = trust_coefficient * p_norm / jnp.where(u_norm > 0, u_norm, 1.0)
            factor = jnp.where(lr > 0, jnp.minimum(ratio / jnp.where(lr > 0, lr, 1.0), 1.0), 1.0)
            factor = jnp.where((p_norm > 0) & (u_norm > 0), factor, 1.0)
            return u * factor.astype(u.dtype)

        updates = jax.tree.map(scale, updates, params)
        return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def make_optimizer(
    optim: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """SGD with momentum, AdamW or LARS, with biases and norms excluded from decay if asked.

    LARS follows optax's order (decay, trust ratio, learning rate, momentum); with
    ``optim.trust_clip`` the trust ratio is clipped as in :func:`scale_by_clipped_trust_ratio`.
    """
    mask = decay_mask if optim.exclude_bias_and_norm else True
    if optim.name == "lars" and optim.get("trust_clip", False):
        tx = optax.chain(
            optax.add_decayed_weights(optim.weight_decay, mask=mask),
            optax.masked(scale_by_clipped_trust_ratio(optim.trust_coefficient, schedule), mask),
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
