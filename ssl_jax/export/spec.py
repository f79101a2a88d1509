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
    ``False``, or the categorical head included with the arrays (:func:`make_head_spec`,
    e.g. ``{"kind": "bn_linear", "num_classes": 10}`` for a fine-tuned classifier); ``data``:
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
    if isinstance(head, Mapping):
        if set(head) != {"kind", "num_classes"}:
            raise ValueError(f"spec head needs exactly 'kind' and 'num_classes', got {head!r}.")
        head = make_head_spec(**head)
    elif head is not False:
        raise ValueError(
            f"spec head must be false or a head section {{'kind', 'num_classes'}}, got {head!r}."
        )
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
    "COLOR_SPACES",
    "check_input",
    "HEAD_KINDS",
    "NETWORKS",
    "SPEC_FORMAT",
    "check_spec",
    "make_head_spec",
    "make_input_spec",
    "make_spec",
]
