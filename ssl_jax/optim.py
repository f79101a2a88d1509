"""Optimizers and learning-rate schedules built from the ``optim``/``schedule`` config."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax import param_groups
from ssl_jax.config import scaled_learning_rate

GROUP_FIELDS = ("lr_mult", "weight_decay")

# Maps a tree (the params, or updates shaped like them) to a tree of the same structure holding
# one Python float per leaf. Evaluated at trace time from paths and shapes only.
PerLeaf = Callable[[Any], Any]


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
    trust_coefficient: float,
    weight_decay: float | PerLeaf,
    learning_rate: optax.Schedule,
    *,
    lr_mult: PerLeaf | None = None,
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

    ``weight_decay`` may be per leaf (a :data:`PerLeaf` function). ``lr_mult`` (per leaf) says
    the tensor trains at ``lr_mult * lr_t`` (its parameter group's learning rate): the clip is
    then at ``lr_mult * lr_t``, and the caller scales the step by ``lr_mult`` after the lr.
    """

    def init(params):
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params):
        lr = learning_rate(state.count)
        decays = (
            weight_decay(updates)
            if callable(weight_decay)
            else jax.tree.map(lambda _: weight_decay, updates)
        )
        mults = lr_mult(updates) if lr_mult is not None else jax.tree.map(lambda _: 1.0, updates)

        def direction(g, w, wd, mult):
            group_lr = lr if mult == 1.0 else lr * mult
            w_norm, g_norm = jnp.linalg.norm(w), jnp.linalg.norm(g)
            denominator = g_norm + wd * w_norm
            local_lr = trust_coefficient * w_norm / jnp.where(denominator > 0, denominator, 1.0)
            factor = jnp.where(
                group_lr > 0,
                jnp.minimum(local_lr / jnp.where(group_lr > 0, group_lr, 1.0), 1.0),
                1.0,
            )
            scaled = (g + wd * w) * factor.astype(g.dtype)
            return jnp.where((w_norm > 0) & (g_norm > 0), scaled, g)

        updates = jax.tree.map(direction, updates, params, decays, mults)
        return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def scale_per_leaf(multipliers: PerLeaf) -> optax.GradientTransformation:
    """Multiplies each update leaf by its float from ``multipliers(updates)`` (1.0: untouched).

    Placed after the learning rate (and momentum, which is linear) it gives each leaf the
    learning rate ``multiplier * lr_t``, weight decay included, as a PyTorch parameter group
    with that lr.
    """

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        mults = multipliers(updates)
        updates = jax.tree.map(lambda u, m: u if m == 1.0 else u * m, updates, mults)
        return updates, state

    return optax.GradientTransformation(init, update)


def add_decayed_weights_per_leaf(weight_decay: PerLeaf) -> optax.GradientTransformation:
    """``g + wd * w`` with each leaf's ``wd`` from ``weight_decay(params)`` (0.0: untouched)."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        if params is None:
            raise ValueError(optax.NO_PARAMS_MSG)
        decays = weight_decay(updates)
        updates = jax.tree.map(
            lambda g, w, wd: g if wd == 0.0 else g + wd * w, updates, params, decays
        )
        return updates, state

    return optax.GradientTransformation(init, update)


def group_overrides(optim: ml_collections.ConfigDict) -> dict[str, dict[str, float]]:
    """``optim.param_groups`` as ``{pattern: {field: value}}``, unset (None) fields dropped.

    Entries left with no field are dropped too, so the default config (every entry unset)
    means no groups.
    """
    groups = optim.get("param_groups") or {}
    out = {}
    for name, entry in groups.items():
        if not hasattr(entry, "items"):
            raise ValueError(
                f"optim.param_groups[{name!r}] is {entry!r}; expected a mapping of fields "
                f"{list(GROUP_FIELDS)} to values, e.g. dict(lr_mult=10.0)."
            )
        fields = {k: v for k, v in entry.items() if v is not None}
        for field in GROUP_FIELDS:
            if field in fields and not fields[field] >= 0:
                raise ValueError(
                    f"optim.param_groups[{name!r}].{field}={fields[field]!r}; expected >= 0."
                )
        if fields:
            out[name] = fields
    return out


def check_param_groups(optim: ml_collections.ConfigDict, params: Any) -> None:
    """Raises ``ValueError`` if ``optim.param_groups`` or ``optim.layer_decay`` do not fit
    ``params`` (a pattern selecting nothing, an unknown field, layer decay without a ViT)."""
    param_groups.check_groups(params, group_overrides(optim), GROUP_FIELDS)
    if optim.get("layer_decay") is not None:
        param_groups.vit_depth(params)


def lr_multipliers(optim: ml_collections.ConfigDict, params: Any) -> Any:
    """Each leaf's learning-rate multiplier: its group's ``lr_mult`` (default 1) times, for a
    ViT backbone with ``optim.layer_decay`` set, :func:`param_groups.layer_decay_scales`.

    ``params`` may be a subtree (``optax.masked`` hides leaves): values depend only on a
    leaf's path and number of dimensions. The config is not checked here; see
    :func:`check_param_groups`.
    """
    groups = group_overrides(optim)
    mults = param_groups.group_values(params, groups, "lr_mult", 1.0)
    layer_decay = optim.get("layer_decay")
    if layer_decay is None:
        return mults
    scales = param_groups.layer_decay_scales(params, layer_decay)
    return jax.tree.map(lambda m, s: m * s, mults, scales)


def weight_decays(optim: ml_collections.ConfigDict, params: Any) -> Any:
    """Each leaf's weight decay: its group's ``weight_decay``, else ``optim.weight_decay``
    (0 for ``norm_bias`` leaves when ``optim.exclude_bias_and_norm``). Unchecked, as
    :func:`lr_multipliers`."""
    groups = group_overrides(optim)
    wd = optim.weight_decay
    default = {"weight": wd, "norm_bias": 0.0 if optim.exclude_bias_and_norm else wd}
    return param_groups.group_values(params, groups, "weight_decay", default)


def make_optimizer(
    optim: ml_collections.ConfigDict, schedule: optax.Schedule, params: Any = None
) -> optax.GradientTransformation:
    """SGD with momentum (Nesterov's with ``optim.nesterov``), AdamW or LARS, with biases and
    norms excluded from decay if asked.

    LARS follows optax's order (decay, trust ratio, learning rate, momentum). Without
    ``optim.trust_clip`` it is ``optax.lars`` (trust ratio ``eta ||w|| / ||g + wd w||``, as
    BYOL's code); with it, solo-learn's :func:`clipped_lars_direction` (``eta ||w|| /
    (||g|| + wd ||w||)``, the LARS paper's form, clipped at the scheduled learning rate).

    ``optim.param_groups`` and ``optim.layer_decay`` give leaves their own learning-rate
    multiplier and weight decay (:mod:`ssl_jax.param_groups`); the groups are resolved from
    the tree the optimizer is initialised with, so ``params`` (concrete or abstract, e.g.
    ``jax.eval_shape(method.init, ...)[0]``) is optional: given, the config is checked
    against it here rather than in ``tx.init``. Without groups the optimizer (and its state)
    is exactly the one built before groups existed.
    """
    if params is not None:
        check_param_groups(optim, params)
    if group_overrides(optim) or optim.get("layer_decay") is not None:
        tx = _grouped_optimizer(optim, schedule)
    else:
        tx = _optimizer(optim, schedule)
    if optim.grad_clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
    return tx


def _optimizer(
    optim: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """The optimizer without parameter groups: one lr and weight decay for every leaf."""
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
            optax.sgd(schedule, momentum=optim.momentum, nesterov=optim.get("nesterov", False)),
        )
    elif optim.name == "adamw":
        tx = optax.adamw(
            schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay, mask=mask
        )
    else:
        raise ValueError(f"optim.name={optim.name!r} is not one of 'lars', 'sgd', 'adamw'.")
    return tx


def _grouped_optimizer(
    optim: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """The optimizer with a learning-rate multiplier and a weight decay per leaf.

    Each leaf's weight decay replaces the global one where it is added (before the trust
    ratio for LARS, after Adam's scaling for AdamW); the multiplier scales the final update,
    i.e. the leaf trains at ``mult * lr_t``, decay included (PyTorch parameter groups). The
    LARS trust ratio still follows ``exclude_bias_and_norm`` alone; with ``trust_clip`` the
    excluded leaves get plain ``g + wd * w`` (``wd`` 0 unless a group sets it).
    """
    mask = decay_mask if optim.exclude_bias_and_norm else True
    decays = lambda tree: weight_decays(optim, tree)
    mults = lambda tree: lr_multipliers(optim, tree)
    if optim.name == "lars" and optim.get("trust_clip", False):
        direction = clipped_lars_direction(optim.trust_coefficient, decays, schedule, lr_mult=mults)
        parts = [optax.masked(direction, mask)]
        if optim.exclude_bias_and_norm:
            excluded = lambda p: jax.tree.map(lambda x: jnp.ndim(x) < 2, p)
            parts.append(optax.masked(add_decayed_weights_per_leaf(decays), excluded))
        parts += [optax.scale_by_learning_rate(schedule), optax.trace(decay=optim.momentum)]
    elif optim.name == "lars":
        parts = [
            add_decayed_weights_per_leaf(decays),
            optax.masked(
                optax.scale_by_trust_ratio(trust_coefficient=optim.trust_coefficient), mask
            ),
            optax.scale_by_learning_rate(schedule),
            optax.trace(decay=optim.momentum),
        ]
    elif optim.name == "sgd":
        parts = [
            add_decayed_weights_per_leaf(decays),
            optax.sgd(schedule, momentum=optim.momentum, nesterov=optim.get("nesterov", False)),
        ]
    elif optim.name == "adamw":
        parts = [
            optax.scale_by_adam(b1=optim.b1, b2=optim.b2),
            add_decayed_weights_per_leaf(decays),
            optax.scale_by_learning_rate(schedule),
        ]
    else:
        raise ValueError(f"optim.name={optim.name!r} is not one of 'lars', 'sgd', 'adamw'.")
    tx = optax.chain(*parts, scale_per_leaf(mults))

    def init(params):
        check_param_groups(optim, params)
        return tx.init(params)

    return optax.GradientTransformationExtraArgs(init, tx.update)
