"""The method protocol: an SSL algorithm as data plus pure functions.

Shaped like an optax ``GradientTransformation``: a library factory (``make_simclr(backbone,
views, *, temperature=...)``) takes the networks' structure, the view function and keyword
hyperparameters, and closes over them; jitted code never sees a config.
:func:`ssl_jax.methods.get_method` is the config adapter the programs use. The protocol lives
outside :mod:`ssl_jax.methods` so that a program training a method of its own (fine-tuning's
classifier, :mod:`ssl_jax.programs.finetune_step`) uses it without loading the pretraining
methods, which downstream programs never import (``tests/test_imports.py``).

- ``init(key) -> (params, method_state)``: trainable params and everything not trained by
  gradients (batch statistics, EMA targets, queues, centers).
- ``loss(params, method_state, batch, key, step, frozen) -> (loss, (method_state,
  metrics))``: the views are made from ``batch["images"]`` (uint8) inside, on the
  accelerator. ``step`` is the global step being computed (no method keeps a counter of its
  own); ``frozen`` holds the method's frozen inputs (see ``load_frozen``), else ``None``.
- ``update_state(params, method_state, step) -> method_state``: after the optimizer
  step (EMA, queue push, center update).
- ``export(params, method_state) -> {"params", "batch_stats"}``: the arrays of the encoder
  that downstream programs restore; ``network`` says which one it is (``"online"``,
  ``"target"``, ``"teacher"``, ``"student"``), for the export's spec.
- ``backbone``: the :class:`~ssl_jax.models.ModuleDef`-like structure of the export.
- ``project_params(params) -> params`` (optional): applied after every optimizer update,
  for parameters constrained to a set (SwAV's unit-length prototypes).
- ``diagnose(metrics) -> str | None`` (optional): a warning when logged metrics show a
  failure the loss alone does not, e.g. a collapse (:mod:`ssl_jax.methods.collapse`).
- ``load_frozen(mesh, *, workdir, source) -> pytree`` (optional): the method's frozen inputs
  (a distillation teacher's export; ClusterFit's k-means centroids of the teacher's features
  of the training ``source``, cached in ``workdir``), loaded from the source its config
  names. Programs call it at every start, so a resumed run reloads them; the train step
  receives them as a separate, replicated, non-donated argument, never part of the train
  state or its checkpoints.
- ``visualize(params, method_state, images_uint8, key) -> {row: images}`` (optional): for a
  generative pretext task, rows of float RGB pictures in [0, 1] of the same images
  (``original``, what the network saw as ``input``, its ``output``); pretraining draws them
  for a few test images at the end of the run (``WORKDIR/reconstructions.png``).
- ``input_spec`` (optional): the export's ``input`` section
  (:func:`ssl_jax.export.make_input_spec`) when the method decides it — a pretext task
  whose network takes another colour space (colorization: the L channel); ``None``: the run's
  augment recipe gives it (size, mean, std of its first view, RGB).
- ``batch_terms``: what in the loss couples the examples of a batch (in-batch negatives, a
  queue, batch statistics), in words; ``""`` when the loss is a mean of per-example terms given
  the step's method state, the one case in which gradient accumulation equals the big batch
  (:mod:`ssl_jax.accumulation` refuses the others, naming this).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

PyTree = Any
# Method.batch_terms: what couples the examples of a batch in the loss ("" when it is a mean
# of per-example terms, so gradient accumulation is exact: ssl_jax.accumulation).
UNCHECKED = "its loss has not been checked for micro-batching"


class Method(NamedTuple):
    name: str
    init: Callable[[Any], tuple[PyTree, PyTree]]
    loss: Callable[..., tuple[Any, tuple[PyTree, dict]]]
    update_state: Callable[[PyTree, PyTree, Any], PyTree]
    export: Callable[[PyTree, PyTree], dict]
    backbone: Any
    network: str = "online"
    diagnose: Callable[[dict], str | None] | None = None
    project_params: Callable[[PyTree], PyTree] | None = None
    load_frozen: Callable[[Any], PyTree] | None = None
    input_spec: dict | None = None
    visualize: Callable[..., dict] | None = None
    batch_terms: str = UNCHECKED


def no_state_update(params: PyTree, method_state: PyTree, step: Any) -> PyTree:
    """``update_state`` for methods with nothing to update after the optimizer step."""
    del params, step
    return method_state
