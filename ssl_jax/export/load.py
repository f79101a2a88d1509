"""An export as an object: its modules rebuilt from the spec, its arrays, its features.

:func:`load_export` is the one way in for downstream code: it reads the spec
(:mod:`ssl_jax.export.spec`), rebuilds the backbone from it, restores the arrays and gives
the frozen-feature function ``encode(images_uint8) -> features`` (:func:`make_encode_fn`:
:func:`~ssl_jax.export.preprocess.preprocess`, then the backbone in eval mode), and the
categorical head's logits when the export has one. Pretraining's kNN monitor encodes with
the same :func:`make_encode_fn`.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh, SingleDeviceSharding

from ssl_jax.augment import check_unit_range
from ssl_jax.checkpoint import (
    CheckpointError,
    checkpoint_dir,
    read_encoder_spec,
    resolve_step,
    restore_encoder,
)
from ssl_jax.export.preprocess import preprocess
from ssl_jax.export.spec import PROTOTYPES, check_head, check_spec, make_input_spec
from ssl_jax.models import DINOHead, LinearClassifier, ModuleDef, make_backbone, module_def
from ssl_jax.parallel import replicated


def make_head(head_spec: Mapping[str, Any], feature_dim: int) -> ModuleDef:
    """The head of ``head_spec`` on ``feature_dim`` features: for a categorical one
    (:func:`make_head_spec`) a zero-initialised :class:`~ssl_jax.models.LinearClassifier`,
    with ``bn_linear`` after an affine-free BatchNorm; for a prototype head
    (:func:`~ssl_jax.export.spec.make_prototype_head_spec`) the
    :class:`~ssl_jax.models.DINOHead` it describes."""
    head_spec = check_head(head_spec)
    if head_spec["kind"] == PROTOTYPES:
        return module_def(
            lambda rngs: DINOHead(
                feature_dim,
                head_spec["out_dim"],
                hidden_features=head_spec["hidden_dim"],
                bottleneck_features=head_spec["bottleneck_dim"],
                num_layers=head_spec["num_layers"],
                use_bn=head_spec["use_bn"],
                norm_last_layer=head_spec["norm_last_layer"],
                rngs=rngs,
            )
        )
    return module_def(
        lambda rngs: LinearClassifier(
            feature_dim,
            head_spec["num_classes"],
            batch_norm=head_spec["kind"] == "bn_linear",
            rngs=rngs,
        )
    )


def export_head(spec: Mapping[str, Any]) -> ModuleDef | None:
    """The head (categorical or prototypes) a (validated) spec describes, or None when it has
    none."""
    return make_head(spec["head"], spec["feature_dim"]) if spec["head"] else None


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
    if input_spec.get("kind") == "tokens":
        raise ValueError(
            "this export is a text encoder (its spec's input is tokens): the adaptation "
            "programs and evaluators take image encoders only so far."
        )
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
    if input_spec.get("kind") == "tokens":
        raise ValueError(
            "this export is a text encoder (its spec's input is tokens): the adaptation "
            "programs and evaluators take image encoders only so far."
        )
    input_spec = make_input_spec(**input_spec)

    def encode(arrays: dict, images: jax.Array) -> jax.Array:
        x = preprocess(images, input_spec)
        return x.reshape(x.shape[0], -1).astype(jnp.float32)

    return encode


def make_logits_fn(
    backbone: ModuleDef, head: ModuleDef, input_spec: Mapping[str, Any]
) -> Callable[[dict, jax.Array], jax.Array]:
    """``logits(arrays, images_uint8) -> (N, num_classes)``: the export's head on its pooled
    features (:func:`make_encode_fn`), eval-mode BatchNorm, float32; a prototype head gives
    its raw ``(N, out_dim)`` outputs (before centering and temperature). ``arrays`` is an
    export's ``{"params", "batch_stats", "head": {"params", "batch_stats"}}``. Not jitted."""
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
        """The head's logits ``(N, num_classes)`` of uint8 images, jitted (a DINO-family
        teacher's prototype head: its raw ``(N, out_dim)`` outputs, to be centred with
        ``arrays["head"]["center"]`` or Sinkhorn-Knopp and divided by the spec's
        ``teacher_temp``); ``ValueError`` when the export has no head, or for float images
        outside [0, 1]."""
        check_unit_range(images)
        if self.head is None:
            raise ValueError(
                f"This {self.spec['method']} export has no head (spec head: false); a "
                "fine-tuning run's export has one (launch/finetune.py), and so has a DINO, "
                "iBOT or DINOv2 pretraining run's (its teacher prototypes)."
            )
        if "logits" not in self._jitted:
            fn = make_logits_fn(self.backbone, self.head, self.spec["input"])
            self._jitted["logits"] = jax.jit(fn)
        return self._jitted["logits"](self.arrays, images)

    def random_init(self, seed: int) -> "Export":
        """The same architecture, spec and input with freshly initialised arrays (``seed``)."""
        init = self._init or _init_fn(self.backbone, self.mesh, self.head, _center_dim(self.spec))
        arrays = init(jax.random.key(seed))
        return dataclasses.replace(
            self, arrays=arrays, random_init_seed=seed, _jitted={}, _init=init
        )


def _center_dim(spec: Mapping[str, Any]) -> int | None:
    """The width of the center a prototype head with ``centering="centering"`` carries."""
    head = spec["head"]
    if head and head["kind"] == PROTOTYPES and head["centering"] == "centering":
        return head["out_dim"]
    return None


def _init_fn(
    backbone: ModuleDef,
    mesh: Mesh | None,
    head: ModuleDef | None = None,
    center_dim: int | None = None,
):
    """Jitted ``key -> {"params", "batch_stats"}`` (and ``"head"``: the same of ``head``, with
    a zero ``"center"`` ``(center_dim,)`` when given), replicated over ``mesh`` (else on the
    first local device)."""
    sharding = (
        replicated(mesh) if mesh is not None else SingleDeviceSharding(jax.local_devices()[0])
    )

    def init(key):
        arrays = dict(zip(("params", "batch_stats"), backbone.init(key), strict=True))
        if head is not None:
            head_key = jax.random.fold_in(key, 1)
            arrays["head"] = dict(zip(("params", "batch_stats"), head.init(head_key), strict=True))
            if center_dim is not None:
                arrays["head"]["center"] = jnp.zeros((center_dim,), jnp.float32)
        return arrays

    return jax.jit(init, out_shardings=sharding)


def _read_spec(run_dir: str, step: int) -> dict:
    """The validated ``encoder_spec`` item of checkpoint ``step``."""
    where = f"{checkpoint_dir(run_dir)}/{step}"
    spec = read_encoder_spec(run_dir, step)
    if spec is None:
        raise CheckpointError(
            f"{where} has no encoder_spec item. Is it a checkpoint of an ssl_jax pretraining run?"
        )
    try:
        return check_spec(spec)
    except ValueError as e:
        raise CheckpointError(f"The encoder spec of {where} is not valid: {e}") from e


def read_spec(run_dir: str, step: int | None = None) -> dict:
    """The validated spec of a run's export (checkpoint ``step``, else the newest), without
    restoring any array."""
    return _read_spec(run_dir, resolve_step(run_dir, step))


def load_export(
    run_dir: str,
    step: int | None = None,
    *,
    mesh: Mesh | None = None,
    random_init_seed: int | None = None,
) -> Export:
    """The encoder export of a pretraining run's checkpoint (``step``, else the newest).

    Reads the spec, rebuilds the backbone from ``spec["model"]`` and restores the arrays,
    replicated over ``mesh`` (else on the first local device), with the categorical head's
    when the spec has one. ``random_init_seed``: the arrays are a fresh initialisation with
    that seed instead (nothing restored). Raises :class:`~ssl_jax.checkpoint.CheckpointError`
    when there is no checkpoint, it has no spec or an invalid one, or the arrays do not fit
    the architecture (naming the first differing path).
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
    init = _init_fn(backbone, mesh, head, _center_dim(spec))
    export = Export(spec=spec, arrays={}, backbone=backbone, mesh=mesh, head=head, _init=init)
    if random_init_seed is not None:
        return export.random_init(random_init_seed)
    arrays, _ = restore_encoder(run_dir, jax.eval_shape(init, jax.random.key(0)), step)
    return dataclasses.replace(export, arrays=arrays)


__all__ = [
    "Export",
    "export_head",
    "load_export",
    "make_encode_fn",
    "make_head",
    "make_logits_fn",
    "make_pixel_encode_fn",
    "read_spec",
]
