"""The encoder export: a backbone's arrays, the spec that says what they are, and its features.

The export is the stable interface between pretraining and everything after it. Each
checkpoint holds the arrays ``{"params", "batch_stats"}`` of one backbone (item ``encoder``)
and, as JSON beside them, its spec (item ``encoder_spec``, :func:`make_spec`): the
architecture (the run's ``model`` section), the input it expects (size, channels, colour
space, mean, std), which network it is, the method, the feature dim, the step, whether a
categorical head comes with it (``head``: ``false``, or :func:`make_head_spec`'s kind and
number of classes; the arrays then hold ``"head": {"params", "batch_stats"}`` too: a
fine-tuned classifier's, which knowledge distillation reads as the teacher's logits; or a
DINO / iBOT / DINOv2 run's [CLS] prototype head, ``kind: "prototypes"``, with its teacher
temperature, centering and center, which ``dino_kd`` distils), and the
dataset it was trained on (``data``: the identifying fields of the run's data section,
:func:`ssl_jax.data.identity.identify`, or ``null`` when unknown), which the adaptation
programs evaluate on unless told otherwise.

:func:`load_export` is the one way in for downstream code: it rebuilds the backbone from the
spec, restores the arrays and gives the frozen-feature function
``encode(images_uint8) -> features``. Downstream code never reads a pretraining augment recipe
nor imports ``ssl_jax.methods``; pretraining writes the spec (and its kNN monitor encodes with
the same :func:`make_encode_fn`).

- :mod:`ssl_jax.export.spec`: the spec's schema and validation;
- :mod:`ssl_jax.export.preprocess`: uint8 images -> the backbone's input, as the spec says;
- :mod:`ssl_jax.export.load`: :func:`load_export`, :class:`Export` and the encode functions.
"""

from ssl_jax.export.load import (
    Export,
    export_head,
    load_export,
    make_encode_fn,
    make_head,
    make_logits_fn,
    make_pixel_encode_fn,
    read_spec,
)
from ssl_jax.export.preprocess import convert_input, preprocess
from ssl_jax.export.spec import (
    CENTERINGS,
    COLOR_SPACES,
    HEAD_KINDS,
    NETWORKS,
    PROTOTYPES,
    SPEC_FORMAT,
    check_head,
    check_spec,
    make_head_spec,
    make_input_spec,
    make_prototype_head_spec,
    make_spec,
)

__all__ = [
    "CENTERINGS",
    "COLOR_SPACES",
    "HEAD_KINDS",
    "NETWORKS",
    "PROTOTYPES",
    "SPEC_FORMAT",
    "Export",
    "check_head",
    "check_spec",
    "convert_input",
    "export_head",
    "load_export",
    "make_encode_fn",
    "make_head",
    "make_head_spec",
    "make_input_spec",
    "make_logits_fn",
    "make_prototype_head_spec",
    "make_pixel_encode_fn",
    "make_spec",
    "preprocess",
    "read_spec",
]
