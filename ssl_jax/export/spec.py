"""The export's spec: what an encoder export is, as JSON-ready dicts (:func:`make_spec`).

Every checkpoint of a run holds, beside the export's arrays, this spec (item
``encoder_spec``): the architecture (the run's ``model`` section, from which
:func:`ssl_jax.models.make_backbone` rebuilds the backbone), the input it expects
(:func:`make_input_spec`), which network it is, the method, the feature dim, the step, the
categorical head that comes with it (:func:`make_head_spec`, or ``false``) and the dataset it
was trained on. Each ``make_`` function validates its fields and raises ``ValueError``
naming the offending one.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from ssl_jax.data.identity import check_identity
from ssl_jax.data.tokens import make_text_input_spec

SPEC_FORMAT = 1
# Colour space -> channel counts the backbone may take (gray and Lab L: 1, or 3 repeated).
COLOR_SPACES = {"rgb": (3,), "gray": (1, 3), "lab_l": (1, 3)}
NETWORKS = ("online", "target", "student")
# Categorical heads an export may carry: a linear classifier on the pooled features, after an
# affine-free BatchNorm for ``bn_linear`` (the heads of ``launch/finetune.py``).
HEAD_KINDS = ("linear", "bn_linear")
# The other head an export may carry: a DINO-family teacher's [CLS] prototype head
# (:func:`make_prototype_head_spec`), and how its outputs are centred into targets.
PROTOTYPES = "prototypes"
CENTERINGS = ("centering", "sinkhorn_knopp")


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


def make_head_spec(kind: str, num_classes: int) -> dict:
    """The ``head`` section of a spec: a categorical head of ``kind`` (:data:`HEAD_KINDS`) with
    ``num_classes`` outputs on the backbone's pooled features."""
    if kind not in HEAD_KINDS:
        raise ValueError(f"head kind={kind!r} is unknown; valid: {list(HEAD_KINDS)}.")
    return {"kind": kind, "num_classes": _positive_int(num_classes, "head num_classes")}


def make_prototype_head_spec(
    *,
    out_dim: int,
    hidden_dim: int,
    bottleneck_dim: int,
    num_layers: int,
    use_bn: bool,
    norm_last_layer: bool,
    teacher_temp: float,
    centering: str,
    sinkhorn_iters: int = 0,
) -> dict:
    """The ``head`` section of a DINO / iBOT / DINOv2 export: the [CLS]
    :class:`~ssl_jax.models.DINOHead` (MLP of ``num_layers`` layers of width ``hidden_dim``
    to the ``bottleneck_dim`` bottleneck, then ``out_dim`` prototypes), the teacher
    temperature at the export's step, and the centering of its outputs into targets:
    ``"centering"`` (``softmax((t - c) / teacher_temp)``, the export's arrays then hold the
    center ``head/center`` ``(out_dim,)``) or ``"sinkhorn_knopp"`` (``sinkhorn_iters``
    Sinkhorn-Knopp iterations over the batch at ``epsilon = teacher_temp``, DINOv2's; no
    center). Raises ``ValueError`` naming the offending field."""
    if centering not in CENTERINGS:
        raise ValueError(f"head centering={centering!r} is unknown; valid: {list(CENTERINGS)}.")
    if not isinstance(use_bn, bool) or not isinstance(norm_last_layer, bool):
        raise ValueError(
            f"head use_bn and norm_last_layer must be booleans, got {use_bn!r}, "
            f"{norm_last_layer!r}."
        )
    if isinstance(teacher_temp, bool) or not isinstance(teacher_temp, int | float):
        raise ValueError(f"head teacher_temp must be a number, got {teacher_temp!r}.")
    if not teacher_temp > 0:
        raise ValueError(f"head teacher_temp must be > 0, got {teacher_temp}.")
    if centering == "sinkhorn_knopp":
        sinkhorn_iters = _positive_int(sinkhorn_iters, "head sinkhorn_iters")
    elif sinkhorn_iters != 0:
        raise ValueError(
            f"head sinkhorn_iters={sinkhorn_iters!r} is for centering='sinkhorn_knopp'; "
            "with centering='centering' it is 0."
        )
    return {
        "kind": PROTOTYPES,
        "out_dim": _positive_int(out_dim, "head out_dim"),
        "hidden_dim": _positive_int(hidden_dim, "head hidden_dim"),
        "bottleneck_dim": _positive_int(bottleneck_dim, "head bottleneck_dim"),
        "num_layers": _positive_int(num_layers, "head num_layers"),
        "use_bn": use_bn,
        "norm_last_layer": norm_last_layer,
        "teacher_temp": float(teacher_temp),
        "centering": centering,
        "sinkhorn_iters": sinkhorn_iters,
    }


def check_head(head: Mapping[str, Any] | bool) -> dict | bool:
    """A spec's ``head`` validated: ``False``, a categorical head (:func:`make_head_spec`) or
    a prototype head (:func:`make_prototype_head_spec`, ``kind: "prototypes"``)."""
    if head is False:
        return False
    if not isinstance(head, Mapping):
        raise ValueError(f"spec head must be false or a head section with a 'kind', got {head!r}.")
    fields = {k: v for k, v in head.items() if k != "kind"}
    if head.get("kind") == PROTOTYPES:
        try:
            return make_prototype_head_spec(**fields)
        except TypeError as e:  # a missing or unknown field
            raise ValueError(f"spec head {dict(head)!r} is not a prototype head: {e}.") from e
    if set(head) != {"kind", "num_classes"}:
        raise ValueError(f"spec head needs exactly 'kind' and 'num_classes', got {head!r}.")
    return make_head_spec(**head)


def make_input_spec(
    *,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    color_space: str = "rgb",
    channels: int | None = None,
) -> dict:
    """The ``input`` section of a spec: what :func:`preprocess` makes of uint8 images.

    ``size``: the square side the images are resized to (center crop, antialiased). ``color_space``:
    ``"rgb"``, ``"gray"`` (ITU-R 601 luma) or ``"lab_l"`` (CIE L* / 100, in [0, 1]); ``channels``
    the backbone's input channels (default ``len(mean)``): 3 for RGB, 1 or 3 (repeated) for gray
    and Lab L. ``mean`` and ``std`` (one per channel, in [0, 1] units) normalise the result.
    Raises ``ValueError`` naming the offending field.
    """
    if color_space not in COLOR_SPACES:
        raise ValueError(
            f"input color_space={color_space!r} is unknown; valid: {sorted(COLOR_SPACES)}."
        )
    mean = [float(m) for m in mean]
    std = [float(s) for s in std]
    channels = len(mean) if channels is None else _positive_int(channels, "input channels")
    if channels not in COLOR_SPACES[color_space]:
        raise ValueError(
            f"input channels={channels} does not fit color_space={color_space!r}, which takes "
            f"{' or '.join(map(str, COLOR_SPACES[color_space]))} channels."
        )
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"input mean {mean} and std {std} need one value per channel ({channels})."
        )
    if min(std) <= 0:
        raise ValueError(f"input std must be positive, got {std}.")
    return {
        "size": _positive_int(size, "input size"),
        "channels": channels,
        "color_space": color_space,
        "mean": mean,
        "std": std,
    }


def check_input(input: Mapping[str, Any]) -> dict:
    """The ``input`` section validated: an image one (:func:`make_input_spec`) or, with
    ``kind: "tokens"``, a text one (:func:`ssl_jax.data.tokens.make_text_input_spec`: the
    tokenizer file and its fingerprint, the vocabulary size, the sequence length)."""
    if input.get("kind") == "tokens":
        fields = {k: v for k, v in input.items() if k not in ("kind", "special_tokens")}
        spec = make_text_input_spec(**fields)
        if input.get("special_tokens", spec["special_tokens"]) != spec["special_tokens"]:
            raise ValueError(
                f"input special_tokens {input['special_tokens']} differ from this version's "
                f"{spec['special_tokens']}."
            )
        return spec
    return make_input_spec(**input)


def make_spec(
    model: Mapping[str, Any],
    *,
    input: Mapping[str, Any],
    network: str,
    method: str,
    feature_dim: int,
    step: int,
    head: Mapping[str, Any] | bool = False,
    data: Mapping[str, Any] | None = None,
) -> dict:
    """The encoder export's spec, a JSON-ready dict (format :data:`SPEC_FORMAT`).

    ``model``: the run config's ``model`` section (the backbone is rebuilt from it);
    ``input``: the fields of :func:`make_input_spec` (images) or of a text input
    (:func:`check_input`); ``network``: which network the arrays
    are (``online``, ``target``, ``teacher``, ``student``); ``method``: its name;
    ``feature_dim``: the width of the features; ``step``: the training step; ``head``:
    ``False``, or the head included with the arrays: a categorical one (:func:`make_head_spec`,
    e.g. ``{"kind": "bn_linear", "num_classes": 10}`` for a fine-tuned classifier) or a DINO
    teacher's prototype head (:func:`make_prototype_head_spec`); ``data``:
    the dataset the arrays were trained on, the identifying fields of the run's data section
    (:func:`ssl_jax.data.identity.identify`), or None when unknown. Raises ``ValueError`` on
    an invalid field. Example (a width-4 ResNet-18 pretrained with SimCLR on the 8x8 digits)::

        {"format": 1,
         "model": {"backbone": "resnet18", "width": 4, "stem": "cifar",
                   "zero_init_residual": true},
         "input": {"size": 8, "channels": 3, "color_space": "rgb",
                   "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
         "network": "online", "method": "simclr", "feature_dim": 32, "step": 6,
         "head": false,
         "data": {"name": "digits", "image_size": 8, "train_split": "train",
                  "test_split": "test"}}
    """
    if isinstance(model, ml_collections.ConfigDict):
        model = model.to_dict()
    if not isinstance(model, Mapping) or not isinstance(model.get("backbone"), str):
        raise ValueError(
            f"spec model must be a model config section with a backbone, got {model!r}."
        )
    if network not in NETWORKS:
        raise ValueError(f"spec network={network!r} is unknown; valid: {list(NETWORKS)}.")
    if not isinstance(method, str) or not method:
        raise ValueError(f"spec method must be a method name, got {method!r}.")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"spec step must be an int >= 0, got {step!r}.")
    head = check_head(head)
    if data is not None:
        data = check_identity(data)
    spec = {
        "format": SPEC_FORMAT,
        "model": dict(model),
        "input": check_input(input),
        "network": network,
        "method": method,
        "feature_dim": _positive_int(feature_dim, "spec feature_dim"),
        "step": step,
        "head": head,
        "data": data,
    }
    return json.loads(json.dumps(spec))  # as it reads back: tuples become lists


def check_spec(spec: Mapping[str, Any]) -> dict:
    """``spec`` validated as :func:`make_spec` does; ``ValueError`` if it is not a valid one.
    ``data`` may be absent: it reads as None (dataset unknown)."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"a spec is a JSON object, got {type(spec).__name__}.")
    if spec.get("format") != SPEC_FORMAT:
        raise ValueError(
            f"spec format {spec.get('format')!r} is not {SPEC_FORMAT}, the one this version of "
            "ssl_jax reads; load it with the version that wrote it, or a newer one."
        )
    fields = ("model", "input", "network", "method", "feature_dim", "step", "head")
    unknown = sorted(set(spec) - {"format", "data", *fields})
    missing = [f for f in fields if f not in spec]
    if unknown or missing:
        raise ValueError(f"spec fields missing: {missing}, unknown: {unknown}.")
    model, rest = spec["model"], {f: spec[f] for f in fields[1:]}
    return make_spec(model, **rest, data=spec.get("data"))


__all__ = [
    "CENTERINGS",
    "COLOR_SPACES",
    "PROTOTYPES",
    "check_head",
    "check_input",
    "HEAD_KINDS",
    "NETWORKS",
    "SPEC_FORMAT",
    "check_spec",
    "make_head_spec",
    "make_input_spec",
    "make_prototype_head_spec",
    "make_spec",
]
