"""Momentum (EMA) target networks: momentum schedules, the update, and the export choice.

BYOL, MoCo v2/v3 and DINO keep a target network as an extra param tree of the online
network's structure in ``method_state["target"]`` (and its BatchNorm statistics in
``method_state["target_batch_stats"]``), moved after every optimizer step by
``target <- m target + (1 - m) online`` with a constant or cosine ``m``. DINO, iBOT and
DINOv2 export their [CLS] prototype head with the backbone (:func:`prototype_export`).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from ssl_jax.export import make_prototype_head_spec
from ssl_jax.methods.common import online_export

MOMENTUM_SCHEDULES = ("constant", "cosine", "linear")


def cosine_momentum(step, *, base_momentum: float, total_steps: int) -> jax.Array:
    """BYOL's target decay rate: ``1 - (1 - base) * (cos(pi * step / total) + 1) / 2``."""
    progress = jnp.minimum(step / total_steps, 1.0)
    return 1.0 - (1.0 - base_momentum) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


def make_momentum_schedule(
    kind: str, *, momentum: float, final_momentum: float, total_steps: int | None, method: str
) -> Callable[[jax.Array], jax.Array]:
    """``step -> m``: ``constant`` ``momentum``, or ``cosine`` / ``linear`` from ``momentum``
    to ``final``.

    ``cosine``: ``final - (final - m) * (cos(pi step / total) + 1) / 2``, BYOL's
    :func:`cosine_momentum` when ``final = 1``. ``linear``: ``m + (final - m) * step / total``
    (I-JEPA's and MSN's ``momentum_scheduler``), ``final`` from ``total`` on.
    """
    base, final = float(momentum), float(final_momentum)
    if kind not in MOMENTUM_SCHEDULES:
        raise ValueError(
            f"method.momentum_schedule={kind!r} is unknown; valid: {list(MOMENTUM_SCHEDULES)}."
        )
    if not 0.0 <= base <= 1.0 or (kind != "constant" and not base <= final <= 1.0):
        raise ValueError(
            f"{method} needs 0 <= method.momentum <= method.final_momentum <= 1 (the {kind} "
            f"schedule rises from the first to the second), got {base} and {final}."
        )
    if kind == "constant":
        return lambda step: jnp.asarray(base, jnp.float32)
    if total_steps is None:
        raise ValueError(f"{method} needs total_steps for its {kind} momentum schedule.")
    if kind == "linear":
        return lambda step: base + (final - base) * jnp.minimum(step / total_steps, 1.0)

    def schedule(step):
        rise = 1.0 - cosine_momentum(step, base_momentum=0.0, total_steps=total_steps)
        return final - (final - base) * rise

    return schedule


def init_target(params: dict, stats: dict, parts: tuple[str, ...]) -> dict:
    """The target's method-state entries at init: ``{"target", "target_batch_stats"}``, the
    online ``params`` and batch ``stats`` of ``parts`` (the target starts as a copy)."""
    return {
        "target": {name: params[name] for name in parts},
        "target_batch_stats": {name: stats[name] for name in parts},
    }


def check_export_network(network: str, method: str, target: str) -> str:
    """``network`` validated for a method with a momentum/EMA ``target`` network."""
    if network not in ("online", "target"):
        raise ValueError(
            f"export.network={network!r}: {method} exports 'online' or 'target' (the {target})."
        )
    return network


def target_export(network: str):
    """``export(params, method_state)`` of the online or the target backbone."""

    def export(params, method_state):
        if network == "target":
            return {
                "params": method_state["target"]["backbone"],
                "batch_stats": method_state["target_batch_stats"]["backbone"],
            }
        return online_export(params, method_state)

    return export


def prototype_export(
    network: str,
    out_dim: int,
    head_kwargs: dict,
    temperature: Callable,
    *,
    centering: str = "centering",
    sinkhorn_iters: int = 0,
) -> tuple[Callable, Callable]:
    """``(export, head_spec)`` of a DINO-family method: :func:`target_export`'s backbone and,
    under ``"head"``, the same network's [CLS] :class:`~ssl_jax.models.DINOHead` (part
    ``head``; ``head_kwargs``: its :func:`~ssl_jax.methods.networks.dino_head` keywords) with
    ``method_state["center"]`` when ``centering="centering"``; ``head_spec(step)`` is its spec
    (:func:`~ssl_jax.export.make_prototype_head_spec`) with the teacher temperature
    ``temperature(step)``. With ``network="target"`` this is the EMA teacher's head, whose
    prototype distribution DINOv2 distils into smaller students."""
    backbone_export = target_export(network)

    def export(params, method_state):
        if network == "target":
            head = {
                "params": method_state["target"]["head"],
                "batch_stats": method_state["target_batch_stats"]["head"],
            }
        else:
            head = {"params": params["head"], "batch_stats": method_state["batch_stats"]["head"]}
        if centering == "centering":
            head["center"] = method_state["center"]
        return {**backbone_export(params, method_state), "head": head}

    def head_spec(step: int) -> dict:
        return make_prototype_head_spec(
            out_dim=int(out_dim),
            hidden_dim=int(head_kwargs["hidden_features"]),
            bottleneck_dim=int(head_kwargs["bottleneck_features"]),
            num_layers=int(head_kwargs["num_layers"]),
            use_bn=bool(head_kwargs.get("use_bn", False)),
            norm_last_layer=bool(head_kwargs.get("norm_last_layer", True)),
            teacher_temp=float(temperature(step)),
            centering=centering,
            sinkhorn_iters=sinkhorn_iters if centering == "sinkhorn_knopp" else 0,
        )

    return export, head_spec


def momentum_update(schedule: Callable, parts: tuple[str, ...]):
    """``update_state``: ``target <- m target + (1 - m) online`` over ``parts``.

    ``m = schedule(step)``: constant or cosine for MoCo, cosine to 1 for BYOL and DINO.
    """

    def update_state(params, method_state, step):
        m = schedule(step)
        online = {name: params[name] for name in parts}
        target = optax.incremental_update(online, method_state["target"], 1.0 - m)
        return {**method_state, "target": target}

    return update_state
