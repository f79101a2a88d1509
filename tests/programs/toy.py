"""A toy method for testing ``pretrain.run``'s loop without compiling a ResNet.

``with_toy_method()`` stands in for :func:`ssl_jax.methods.get_method` (monkeypatch
``pretrain.get_method`` with it). The method has params ``{"w": (4,)}``, loss
``sum((w - batch mean)^2)`` (so the trajectory depends on the data order) and a method
state ``{"t": steps taken}`` set by ``update_state``.
"""

import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax.method import Method


@jax.custom_vjp
def _poison_grad(x, poison):
    """``x`` unchanged; its cotangent becomes NaN where ``poison`` is true."""
    del poison
    return x


def _poison_fwd(x, poison):
    return x, poison


def _poison_bwd(poison, g):
    return jnp.where(poison, jnp.nan, g), None


_poison_grad.defvjp(_poison_fwd, _poison_bwd)


def toy_method(
    *,
    nan_grad_from_step: int | None = None,
    nan_loss_from_step: int | None = None,
    frozen_source: str | None = None,
) -> Method:
    """The toy method; from 0-based step ``nan_grad_from_step`` on, the loss value stays
    finite but its gradient is NaN; from ``nan_loss_from_step`` on, the loss is NaN.

    ``frozen_source``: a ``.npy`` file of 4 values, the method's frozen input ``anchor``
    (loaded by ``load_frozen`` at every start); the loss adds ``sum((w - anchor)^2)``.
    """

    def init(key):
        del key
        return {"w": jnp.array([0.1, 0.2, 0.3, 0.4], jnp.float32)}, {"t": jnp.zeros((), jnp.int32)}

    def loss(params, method_state, batch, key, step, frozen):
        del key
        target = jnp.mean(batch["images"].astype(jnp.float32)) / 255.0
        value = jnp.sum((params["w"] - target) ** 2)
        if frozen is not None:
            value = value + jnp.sum((params["w"] - frozen["anchor"]) ** 2)
        if nan_grad_from_step is not None:
            value = _poison_grad(value, step >= nan_grad_from_step)
        if nan_loss_from_step is not None:
            value = jnp.where(step >= nan_loss_from_step, jnp.nan, value)
        return value, (method_state, {"target": target})

    def update_state(params, method_state, step):
        del params
        return {"t": (step + 1).astype(jnp.int32)}

    return Method(
        name="toy",
        init=init,
        loss=loss,
        update_state=update_state,
        export=lambda params, state: {"params": params, "batch_stats": state},
        backbone=SimpleNamespace(feature_dim=4),  # the export spec's feature_dim
        load_frozen=None if frozen_source is None else lambda mesh, **_: load_anchor(frozen_source),
    )


LOADS: list[str] = []  # every load_frozen call, in order


def load_anchor(path: str) -> dict:
    LOADS.append(path)
    return {"anchor": jnp.asarray(np.load(path), jnp.float32)}


def _get_toy_method(config, *, total_steps, **kwargs):
    del config, total_steps
    return toy_method(**kwargs)


def with_toy_method(**kwargs):
    """Drop-in for ``ssl_jax.methods.get_method`` returning :func:`toy_method` (``kwargs``)."""
    return functools.partial(_get_toy_method, **kwargs)


def inf_updates_from(count: int) -> optax.GradientTransformation:
    """Passes updates through until ``count`` updates were made, then makes them +inf."""

    def init(params):
        del params
        return jnp.zeros((), jnp.int32)

    def update(updates, state, params=None):
        del params
        updates = jax.tree.map(lambda u: jnp.where(state >= count, jnp.inf, u), updates)
        return updates, state + 1

    return optax.GradientTransformation(init, update)
