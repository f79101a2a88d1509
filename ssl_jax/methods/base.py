"""The method protocol: an SSL algorithm as data plus pure functions.

Shaped like an optax ``GradientTransformation``. Hyperparameters are read once when the
method is built and closed over; jitted code never sees a config.

- ``init(key, sample_batch) -> (params, method_state)``: trainable params and everything
  not trained by gradients (batch statistics, EMA targets, queues, centers).
- ``loss(params, method_state, batch, key) -> (loss, (method_state, metrics))``: the
  views are made from ``batch["images"]`` (uint8) inside, on the accelerator.
- ``update_state(params, method_state, step) -> method_state``: after the optimizer
  step (EMA, queue push, center update).
- ``export(params, method_state) -> {"params", "batch_stats"}``: the encoder that
  downstream programs restore (the online or the target network, as configured).
- ``backbone``: the graphdef-bearing :class:`ssl_jax.encoder.Backbone` of the export.
- ``project_params(params) -> params`` (optional): applied after every optimizer update,
  for parameters constrained to a set (SwAV's unit-length prototypes).
- ``diagnose(metrics) -> str | None`` (optional): a warning when logged metrics show a
  failure the loss alone does not, e.g. a collapse (:mod:`ssl_jax.methods.collapse`).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from ssl_jax.encoder import Backbone

PyTree = Any


class Method(NamedTuple):
    name: str
    init: Callable[..., tuple[PyTree, PyTree]]
    loss: Callable[..., tuple[Any, tuple[PyTree, dict]]]
    update_state: Callable[[PyTree, PyTree, Any], PyTree]
    export: Callable[[PyTree, PyTree], dict]
    backbone: Backbone
    diagnose: Callable[[dict], str | None] | None = None
    project_params: Callable[[PyTree], PyTree] | None = None


def no_state_update(params: PyTree, method_state: PyTree, step: Any) -> PyTree:
    """``update_state`` for methods with nothing to update after the optimizer step."""
    del params, step
    return method_state
