"""The method protocol: an SSL algorithm as data plus pure functions.

Shaped like an optax ``GradientTransformation``: a library factory (``make_simclr(backbone,
views, *, temperature=...)``) takes the networks' structure, the view function and keyword
hyperparameters, and closes over them; jitted code never sees a config.
:func:`ssl_jax.methods.get_method` is the config adapter the programs use. The protocol lives
outside :mod:`ssl_jax.methods` so that a program training a method of its own (fine-tuning's
classifier, :mod:`ssl_jax.programs.finetune_step`) uses it without loading the pretraining
methods, which downstream programs never import (``tests/test_imports.py``).

- ``init(key) -> (params, method_state)``: trainable params and everything not trained by
  gradients (batch statistics, target params, queues, centers).
- ``loss(params, method_state, batch, key, step, frozen) -> (loss, (method_state,
  metrics))``: the views are made from ``batch["images"]`` (uint8) inside, on the
  accelerator (text methods read the token records ``batch["tokens"]`` and
  ``batch["segments"]`` instead, and take no view function). ``step`` is the global step
  being computed (no method keeps a counter of its own); ``frozen`` holds the method's
  frozen inputs (see ``load_frozen``), else ``None``.
- ``update_state(params, method_state, step) -> method_state``: after the optimizer step.

  **The rule**: state that depends on this step's activations comes out of ``loss`` as its
  new ``method_state`` (BatchNorm statistics, a queue push, DINO's center, SwAV's queue,
  colorization's ab prior); ``update_state`` only moves state derived from the parameters
  the optimizer just updated (the EMA ``target`` of BYOL, MoCo and DINO,
  :func:`~ssl_jax.methods.momentum.momentum_update`), else it is :func:`no_state_update`.
  ``loss`` is the only place that sees the activations; a state it returns is the state the
  next step reads, so nothing is computed twice.
- ``export(params, method_state) -> {"params", "batch_stats"}``: the arrays of the encoder
  that downstream programs restore; ``network`` says which one it is, for the export's spec:
  ``"online"`` (the network trained by gradients), ``"target"`` (the EMA network of BYOL, MoCo
  v2/v3 and DINO: the key encoder, DINO's teacher) or ``"student"`` (a distillation student).
- ``backbone``: the :class:`~ssl_jax.models.ModuleDef`-like structure of the export.
- ``head_spec(step) -> dict`` (optional): the spec ``head`` of the export at ``step`` when
  ``export`` also returns ``"head": {"params", "batch_stats", ...}`` (DINO, iBOT and DINOv2:
  the exported network's [CLS] prototype head, with the teacher temperature of that step and
  its centering, :func:`ssl_jax.export.make_prototype_head_spec`); ``None``: no head.
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

A factory declares itself with :func:`method_factory`: the name configs give as
``method.name`` and the kind of view function it takes (:data:`VIEW_KINDS`). The registry
(:mod:`ssl_jax.methods.registry`) finds every declared factory of this package and builds the
views its declaration names, so a new method is its own file, its config and its test.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

PyTree = Any
# Method.batch_terms: what couples the examples of a batch in the loss ("" when it is a mean
# of per-example terms, so gradient accumulation is exact: ssl_jax.accumulation).
UNCHECKED = "its loss has not been checked for micro-batching"

# The view functions a factory takes (``views(images_uint8, key) -> ...``):
TWO_VIEWS = "two_views"  # -> (v1, v2), two augmented, normalised views (a two-view recipe)
MULTICROP = "multicrop"  # -> (global_crops, local_crops), tuples of normalised crops
ONE_RAW_VIEW = "one_raw_view"  # -> x, one augmented view in [0, 1], not normalised
TOKENS = "tokens"  # no view function (None): text methods read batch["tokens"], ["segments"]
VIEW_KINDS = (TWO_VIEWS, MULTICROP, ONE_RAW_VIEW, TOKENS)


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
    head_spec: Callable[[int], dict] | None = None


def method_factory(name: str, *, views: str) -> Callable[[Callable], Callable]:
    """Declare a factory as method ``name`` taking view functions of kind ``views``.

    The decorator returns the factory unchanged, with ``method_name`` and ``views``
    attributes; the registry discovers them (a name declared twice is an error). ``views``:
    :data:`TWO_VIEWS`, :data:`MULTICROP`, :data:`ONE_RAW_VIEW` or :data:`TOKENS` (text: the
    factory gets ``views=None``).
    """
    if views not in VIEW_KINDS:
        raise ValueError(f"method {name!r}: views={views!r} is not one of {VIEW_KINDS}.")

    def declare(factory: Callable[..., Method]) -> Callable[..., Method]:
        factory.method_name = name
        factory.views = views
        return factory

    return declare


def no_state_update(params: PyTree, method_state: PyTree, step: Any) -> PyTree:
    """``update_state`` for methods with nothing to update after the optimizer step."""
    del params, step
    return method_state
