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


def make_optimizer(
    optim: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """SGD with momentum, AdamW or LARS, with biases and norms excluded from decay if asked."""
    mask = decay_mask if optim.exclude_bias_and_norm else True
    if optim.name == "lars":
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
