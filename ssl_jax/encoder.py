"""The encoder export: a backbone's arrays, the spec that says what they are, and its features.

The export is the stable interface between pretraining and everything after it. Each
checkpoint holds the arrays ``{"params", "batch_stats"}`` of one backbone (item ``encoder``)
and, as JSON beside them, its spec (item ``encoder_spec``, :func:`make_spec`): the
architecture (the run's ``model`` section), the input it expects (size, channels, colour
space, mean, std), which network it is, the method, the feature dim, the step, whether a
categorical head comes with it (``head``: ``false``, or :func:`make_head_spec`'s kind and
number of classes; the arrays then hold ``"head": {"params", "batch_stats"}`` too: a
fine-tuned classifier's, which knowledge distillation reads as the teacher's logits), and the
dataset it was trained on (``data``: the identifying fields of the run's data section,
:func:`ssl_jax.data.identity.identify`; ``null`` in exports written before specs held it),
which the adaptation programs evaluate on unless told otherwise.

:func:`load_export` is the one way in for downstream code: it rebuilds the backbone from the
spec, restores the arrays and gives the frozen-feature function
``encode(images_uint8) -> features``. Downstream code never reads a pretraining augment recipe
nor imports ``ssl_jax.methods``; pretraining writes the spec (and its kNN monitor encodes with
the same :func:`make_encode_fn`).
"""

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding

from ssl_jax.augment import (
    center_crop_resize,
    check_unit_range,
    normalize,
    to_grayscale,
    to_unit_float,
)
from ssl_jax.augment.from_config import eval_settings
from ssl_jax.checkpoint import (
    CheckpointError,
    checkpoint_dir,
    read_config,
    read_encoder_spec,
    resolve_step,
    restore_encoder,
)
from ssl_jax.data.identity import check_identity, identify
from ssl_jax.models import VITS, LinearClassifier, ModuleDef, get_backbone, module_def
from ssl_jax.parallel import replicated
from ssl_jax.pretext.lab import rgb_to_lab

log = logging.getLogger(__name__)

SPEC_FORMAT = 1
# Colour space -> channel counts the backbone may take (gray and Lab L: 1, or 3 repeated).
COLOR_SPACES = {"rgb": (3,), "gray": (1, 3), "lab_l": (1, 3)}
NETWORKS = ("online", "target", "teacher", "student")
# The backbone's computation dtype (``model.dtype``): parameters, BatchNorm statistics and the
# pooled output stay float32 either way.
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Categorical heads an export may carry: a linear classifier on the pooled features, after an
# affine-free BatchNorm for ``bn_linear`` (the heads of ``launch/finetune.py``).
HEAD_KINDS = ("linear", "bn_linear")


def compute_dtype(model: Mapping[str, Any]):
    """The computation dtype ``model.dtype`` names (absent: float32, as exports before it)."""
    name = model.get("dtype", "float32")
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"model.dtype={name!r} is unknown; valid: {sorted(COMPUTE_DTYPES)}.")
    return COMPUTE_DTYPES[name]


def _build(model: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    """The backbone of ``model``, given only its family's fields (absent ViT fields: ViT/16)."""
    dtype = compute_dtype(model)
    remat = bool(model.get("remat", False))
    if model.backbone in VITS:
        kwargs = {
            "img_size": model.get("img_size", 224),
            "pool": model.get("pool", "cls"),
            # Regularisers of training only (no parameters): fine-tuning sets them.
            "drop_rate": model.get("drop_rate", 0.0),
            "drop_path_rate": model.get("drop_path_rate", 0.0),
        }
        if remat:
            kwargs["remat"] = model.get("remat_policy", "full")
        # Optional overrides of the family's shape (its patch size: 16, 14 for ViT-H and
        # ViT-g; a smaller ViT than ViT-Ti in tests).
        keys = ("patch_size", "embed_dim", "depth", "num_heads")
        kwargs.update({k: model[k] for k in keys if k in model})
    else:
        if remat and model.get("remat_policy", "full") != "full":
            raise ValueError(
                f"model.remat_policy={model.remat_policy!r}: ResNets recompute whole blocks "
                "only; set it 'full' (policies apply to ViTs)."
            )
        kwargs = {
            "width": model.width,
            "stem": model.stem,
            "zero_init_residual": model.get("zero_init_residual", True),
            "remat": remat,
        }
    return get_backbone(model.backbone, rngs=rngs, dtype=dtype, **kwargs)


def make_backbone(model: ml_collections.ConfigDict) -> ModuleDef:
    """The backbone of the ``model`` config section as a :class:`~ssl_jax.models.ModuleDef`
    (structure only, no parameter memory)."""
    return module_def(lambda rngs: _build(model, rngs))


def make_head_spec(kind: str, num_classes: int) -> dict:
    """The ``head`` section of a spec: a categorical head of ``kind`` (:data:`HEAD_KINDS`) with
    ``num_classes`` outputs on the backbone's pooled features."""
    if kind not in HEAD_KINDS:
        raise ValueError(f"head kind={kind!r} is unknown; valid: {list(HEAD_KINDS)}.")
    return {"kind": kind, "num_classes": _positive_int(num_classes, "head num_classes")}


def make_head(head_spec: Mapping[str, Any], feature_dim: int) -> ModuleDef:
    """The head of ``head_spec`` (:func:`make_head_spec`) on ``feature_dim`` features: a
    zero-initialised :class:`~ssl_jax.models.LinearClassifier`, with ``bn_linear`` after an
    affine-free BatchNorm."""
    head_spec = make_head_spec(**head_spec)
    return module_def(
        lambda rngs: LinearClassifier(
            feature_dim,
            head_spec["num_classes"],
            batch_norm=head_spec["kind"] == "bn_linear",
            rngs=rngs,
        )
    )


def export_head(spec: Mapping[str, Any]) -> ModuleDef | None:
    """The categorical head a (validated) spec describes, or None when it has none."""
    return make_head(spec["head"], spec["feature_dim"]) if spec["head"] else None


# --- The spec ---------------------------------------------------------------------------------


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


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
    ``input``: the fields of :func:`make_input_spec`; ``network``: which network the arrays
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
        "input": make_input_spec(**input),
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
    ``data`` is optional (exports written before specs recorded their dataset)."""
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


def legacy_spec_from_config(run_config: Mapping[str, Any], step: int) -> dict:
    """The spec of an export written before specs existed, derived from its run's config.

    Such checkpoints hold the config as JSON: the architecture is its ``model`` section, the
    input the pretraining ``augment`` recipe's evaluation view (size, ImageNet or the
    recipe's mean/std, RGB), the network ``export.network`` (default online), the dataset
    its ``data`` section.
    """
    config = ml_collections.ConfigDict(dict(run_config))
    network = config.get("export", {}).get("network", "online")
    return make_spec(
        config.model,
        input=make_input_spec(**eval_settings(config.augment)),
        network=network,
        method=config.method.name,
        feature_dim=make_backbone(config.model).feature_dim,
        step=step,
        data=identify(config.data) if "data" in config else None,
    )


# --- Frozen features -------------------------------------------------------------------------


def _lab_lightness(x: jax.Array) -> jax.Array:
    """CIE L* / 100 (D65 white) of sRGB ``x`` in [0, 1]: ``(..., 3)`` or gray ``(..., 1)`` ->
    ``(..., 1)`` in [0, 1]; the conversion of the colorization task's targets
    (:func:`ssl_jax.pretext.rgb_to_lab`)."""
    rgb = jnp.broadcast_to(x, (*x.shape[:-1], 3))  # gray: R = G = B
    return rgb_to_lab(rgb)[..., :1] / 100.0


def _to_color_space(x: jax.Array, color_space: str, channels: int) -> jax.Array:
    if color_space == "rgb":
        return x
    if color_space == "gray":
        y = to_grayscale(x)[..., :1] if x.shape[-1] == 3 else x[..., :1]
    else:
        y = _lab_lightness(x)
    return jnp.broadcast_to(y, (*y.shape[:-1], channels))


def convert_input(x: jax.typing.ArrayLike, input_spec: Mapping[str, Any]) -> jax.Array:
    """Float images in [0, 1] ``(N, H, W, C)`` -> the backbone's input: converted to the spec's
    colour space and channels, normalised with its mean and std (no resizing). Pretext methods
    call it on their training inputs, :func:`preprocess` on evaluation images: one conversion
    for both."""
    x = _to_color_space(jnp.asarray(x), input_spec["color_space"], input_spec["channels"])
    return normalize(x, mean=input_spec["mean"], std=input_spec["std"])


def preprocess(images: jax.typing.ArrayLike, input_spec: Mapping[str, Any]) -> jax.Array:
    """uint8 ``(N, H, W, C)`` -> the backbone's input: [0, 1], center crop resized to
    ``size`` (deterministic), then :func:`convert_input`. Float images must already be in
    [0, 1] (checked when concrete; traced, under ``jax.jit``, they cannot be)."""
    return convert_input(
        center_crop_resize(to_unit_float(images), size=input_spec["size"]), input_spec
    )


def _pool(name: str, feature: jax.Array) -> jax.Array:
    """``(N, C)`` features of an intermediate output: maps are averaged, token sequences give
    their first ([CLS]) token."""
    if feature.ndim == 4:
        return jnp.mean(feature.astype(jnp.float32), axis=(1, 2))
    if feature.ndim == 3:
        return feature[:, 0].astype(jnp.float32)
    if feature.ndim == 2:
        return feature.astype(jnp.float32)
    raise ValueError(f"layer {name!r} has shape {feature.shape}; expected 2, 3 or 4 dims.")


def make_encode_fn(
    backbone, input_spec: Mapping[str, Any], *, layer: str | None = None
) -> Callable[[dict, jax.Array], jax.Array]:
    """``encode(arrays, images_uint8) -> features (N, D)``: :func:`preprocess`, eval-mode BN.

    ``arrays`` is an export's ``{"params", "batch_stats"}``. ``layer`` names an intermediate
    output of the backbone (``backbone.apply(..., return_all=True)``: ResNet ``"stem"``,
    ``"stage1"``...; ViT ``"tokens"``, ``"block1"``...; both ``"pooled"``): feature maps are
    globally average-pooled, token sequences give their [CLS] token. Not jitted (wrap it in
    ``jax.jit`` or ``evaluators.make_sharded_encode``); float images must be in [0, 1], which a
    jitted ``encode`` cannot check (:meth:`Export.encode` checks before its call).
    """
    input_spec = make_input_spec(**input_spec)

    def encode(arrays: dict, images: jax.Array) -> jax.Array:
        x = preprocess(images, input_spec)
        if layer is None:
            feats, _ = backbone.apply(arrays["params"], arrays["batch_stats"], x, train=False)
            return feats
        try:
            outputs, _ = backbone.apply(
                arrays["params"], arrays["batch_stats"], x, train=False, return_all=True
            )
        except TypeError as e:
            if "return_all" not in str(e):
                raise
            outputs = None
        if not isinstance(outputs, Mapping):
            raise NotImplementedError(
                f"encode(layer={layer!r}) needs a backbone that returns its intermediate "
                "outputs (called with return_all=True); this one does not."
            )
        if layer not in outputs:
            raise ValueError(f"layer={layer!r} is not an output of the backbone: {list(outputs)}.")
        return _pool(layer, outputs[layer])

    return encode


def make_pixel_encode_fn(input_spec: Mapping[str, Any]) -> Callable[[dict, jax.Array], jax.Array]:
    """``encode(arrays, images_uint8) -> (N, size * size * channels)``: the raw-pixel baseline.

    The features are :func:`preprocess`'s output (the encoder's input) flattened; ``arrays``
    is ignored (pass ``{}``). Not jitted.
    """
    input_spec = make_input_spec(**input_spec)

    def encode(arrays: dict, images: jax.Array) -> jax.Array:
        x = preprocess(images, input_spec)
        return x.reshape(x.shape[0], -1).astype(jnp.float32)

    return encode


def make_logits_fn(
    backbone: ModuleDef, head: ModuleDef, input_spec: Mapping[str, Any]
) -> Callable[[dict, jax.Array], jax.Array]:
    """``logits(arrays, images_uint8) -> (N, num_classes)``: the export's categorical head on
    its pooled features (:func:`make_encode_fn`), eval-mode BatchNorm, float32. ``arrays`` is
    an export's ``{"params", "batch_stats", "head": {"params", "batch_stats"}}``. Not jitted."""
    encode = make_encode_fn(backbone, input_spec)

    def logits(arrays: dict, images: jax.Array) -> jax.Array:
        head_arrays = arrays["head"]
        out, _ = head.apply(
            head_arrays["params"], head_arrays["batch_stats"], encode(arrays, images), train=False
        )
        return out.astype(jnp.float32)

    return logits


@dataclasses.dataclass(frozen=True, eq=False)
class Export:
    """An encoder export: its ``spec``, ``arrays`` ``{"params", "batch_stats"}`` and
    ``backbone``; with a categorical head (``spec["head"]``), its ``head`` and
    ``arrays["head"]``. Make one with :func:`load_export`.

    ``random_init_seed`` is set when ``arrays`` are a fresh initialisation of the
    architecture (the baseline a pretrained encoder must beat), not the checkpoint's.
    """

    spec: dict
    arrays: dict
    backbone: ModuleDef
    mesh: Mesh | None = None
    random_init_seed: int | None = None
    head: ModuleDef | None = None
    _jitted: dict = dataclasses.field(default_factory=dict, repr=False)
    _init: Callable | None = dataclasses.field(default=None, repr=False)

    @property
    def feature_dim(self) -> int:
        return self.spec["feature_dim"]

    @property
    def step(self) -> int:
        return self.spec["step"]

    def encode_fn(self, layer: str | None = None) -> Callable[[dict, jax.Array], jax.Array]:
        """The pure ``encode(arrays, images_uint8)`` (see :func:`make_encode_fn`)."""
        return make_encode_fn(self.backbone, self.spec["input"], layer=layer)

    def encode(self, images: jax.typing.ArrayLike, layer: str | None = None) -> jax.Array:
        """Features ``(N, feature_dim)`` of uint8 images ``(N, H, W, C)``, jitted.

        Float images must be in [0, 1] (``ValueError`` otherwise: divide 0..255 by 255). The
        pure :meth:`encode_fn` cannot check a traced input: its callers pass uint8.
        """
        check_unit_range(images)
        if layer not in self._jitted:
            self._jitted[layer] = jax.jit(self.encode_fn(layer))
        return self._jitted[layer](self.arrays, images)

    def logits(self, images: jax.typing.ArrayLike) -> jax.Array:
        """The categorical head's logits ``(N, num_classes)`` of uint8 images, jitted;
        ``ValueError`` when the export has no head, or for float images outside [0, 1]."""
        check_unit_range(images)
        if self.head is None:
            raise ValueError(
                f"This {self.spec['method']} export has no categorical head (spec head: "
                "false); a fine-tuning run's export has one (launch/finetune.py)."
            )
        if "logits" not in self._jitted:
            fn = make_logits_fn(self.backbone, self.head, self.spec["input"])
            self._jitted["logits"] = jax.jit(fn)
        return self._jitted["logits"](self.arrays, images)

    def random_init(self, seed: int) -> "Export":
        """The same architecture, spec and input with freshly initialised arrays (``seed``)."""
        init = self._init or _init_fn(self.backbone, self.mesh, self.head)
        arrays = init(jax.random.key(seed))
        return dataclasses.replace(
            self, arrays=arrays, random_init_seed=seed, _jitted={}, _init=init
        )


def _init_fn(backbone: ModuleDef, mesh: Mesh | None, head: ModuleDef | None = None):
    """Jitted ``key -> {"params", "batch_stats"}`` (and ``"head"``: the same of ``head``),
    replicated over ``mesh`` (else on the first local device)."""
    sharding = (
        replicated(mesh) if mesh is not None else SingleDeviceSharding(jax.local_devices()[0])
    )

    def init(key):
        arrays = dict(zip(("params", "batch_stats"), backbone.init(key), strict=True))
        if head is not None:
            head_key = jax.random.fold_in(key, 1)
            arrays["head"] = dict(zip(("params", "batch_stats"), head.init(head_key), strict=True))
        return arrays

    return jax.jit(init, out_shardings=sharding)


def _read_spec(run_dir: str, step: int) -> dict:
    """The checkpoint's spec; for checkpoints written without one, the legacy derivation."""
    where = f"{checkpoint_dir(run_dir)}/{step}"
    spec = read_encoder_spec(run_dir, step)
    if spec is not None:
        try:
            return check_spec(spec)
        except ValueError as e:
            raise CheckpointError(f"The encoder spec of {where} is not valid: {e}") from e
    try:
        run_config = read_config(run_dir, step)
    except CheckpointError as e:
        raise CheckpointError(
            f"{where} has no encoder_spec item, nor a run config to derive one from ({e}). "
            "Is it a checkpoint of an ssl_jax pretraining run?"
        ) from e
    try:
        spec = legacy_spec_from_config(run_config, step)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{where} has no encoder_spec item, and its run config does not describe the "
            f"encoder ({type(e).__name__}: {e})."
        ) from e
    log.warning(
        "%s has no encoder_spec item (written before exports carried one); using the spec "
        "derived from its run config's model and augment sections.",
        where,
    )
    return spec


def read_spec(run_dir: str, step: int | None = None) -> dict:
    """The validated spec of a run's export (checkpoint ``step``, else the newest), without
    restoring any array; for checkpoints older than specs, derived from the run config."""
    return _read_spec(run_dir, resolve_step(run_dir, step))


def load_export(
    run_dir: str,
    step: int | None = None,
    *,
    mesh: Mesh | None = None,
    random_init_seed: int | None = None,
) -> Export:
    """The encoder export of a pretraining run's checkpoint (``step``, else the newest).

    Reads the spec (or, for checkpoints older than specs, derives it from the run config
    with a warning), rebuilds the backbone from ``spec["model"]`` and restores the arrays,
    replicated over ``mesh`` (else on the first local device), with the categorical head's
    when the spec has one. ``random_init_seed``: the arrays
    are a fresh initialisation with that seed instead (nothing restored). Raises
    :class:`~ssl_jax.checkpoint.CheckpointError` when there is no checkpoint, the spec is
    invalid, or the arrays do not fit the architecture (naming the first differing path).
    """
    step = resolve_step(run_dir, step)
    spec = _read_spec(run_dir, step)
    backbone = make_backbone(ml_collections.ConfigDict(spec["model"]))
    if backbone.feature_dim != spec["feature_dim"]:
        raise CheckpointError(
            f"The encoder spec of {checkpoint_dir(run_dir)}/{step} says feature_dim "
            f"{spec['feature_dim']}, but its model section builds {backbone.feature_dim}."
        )
    head = export_head(spec)
    init = _init_fn(backbone, mesh, head)
    export = Export(spec=spec, arrays={}, backbone=backbone, mesh=mesh, head=head, _init=init)
    if random_init_seed is not None:
        return export.random_init(random_init_seed)
    arrays, _ = restore_encoder(run_dir, jax.eval_shape(init, jax.random.key(0)), step)
    return dataclasses.replace(export, arrays=arrays)
