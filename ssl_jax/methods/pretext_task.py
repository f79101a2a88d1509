"""Pieces the pretext-task methods share: the one view, the classification objective, the
method around it.

A pretext method gets one augmented view in [0, 1] (``views(images_uint8, key) -> x``, no
normalisation: the task builds its input and target from raw pixels) and the export's
``input_spec``; :func:`ssl_jax.export.convert_input` turns whatever the task feeds the
backbone into the backbone's input exactly as evaluation's ``preprocess`` does.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ssl_jax.augment import center_crop_resize, to_unit_float
from ssl_jax.method import UNCHECKED, Method, no_state_update
from ssl_jax.methods.common import make_init, online_export
from ssl_jax.models import ConvDecoder, ModuleDef, module_def


def one_view(views, images, key, method: str) -> jax.Array:
    """``views(images, key)``, checked at trace time to be one float NHWC batch."""
    x = views(images, key)
    if isinstance(x, tuple | list) or getattr(x, "ndim", 0) != 4:
        raise ValueError(
            f"{method} needs a one-view function returning an (N, H, W, C) batch (augment "
            "recipe 'crop_flip'), got "
            f"{f'{len(x)} views' if isinstance(x, tuple | list) else type(x).__name__}."
        )
    return x


def eval_view(images: jax.typing.ArrayLike, input_spec: dict) -> jax.Array:
    """uint8 images -> the evaluation view in [0, 1] (center crop resized to the spec's size),
    the images a method's ``visualize`` shows."""
    return center_crop_resize(to_unit_float(images), size=input_spec["size"])


def to_display(x: jax.Array, input_spec: dict) -> jax.Array:
    """The backbone's normalised RGB input back to [0, 1] pixels, for pictures."""
    mean, std = jnp.asarray(input_spec["mean"]), jnp.asarray(input_spec["std"])
    return jnp.clip(x * std + mean, 0.0, 1.0)


def classification_loss(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, dict]:
    """Mean softmax cross-entropy (float32) and the batch's ``pretext_top1`` (%)."""
    logits = logits.astype(jnp.float32)
    value = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    top1 = 100.0 * jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return value, {"pretext_top1": top1}


def make_classification_pretext(
    name: str, parts: dict, views, objective, input_spec: dict, *, init=None
) -> Method:
    """A pretext task whose targets are classes made from the data (rotation, patch
    position, permutation): the cross-entropy of ``objective(params, method_state, x, key)
    -> (logits, labels, batch_stats)`` on the view ``x``. The online backbone is the export;
    ``init`` defaults to :func:`~ssl_jax.methods.common.make_init` (batch statistics only).
    """

    def loss(params, method_state, batch, key, step, frozen):
        del step, frozen
        view_key, task_key = jax.random.split(key)
        x = one_view(views, batch["images"], view_key, name)
        logits, labels, stats = objective(params, method_state, x, task_key)
        value, metrics = classification_loss(logits, labels)
        return value, ({**method_state, "batch_stats": stats}, metrics)

    return pretext_method(name, parts, loss, input_spec, init=init, batch_terms="")


def pretext_method(
    name: str,
    parts: dict,
    loss,
    input_spec: dict,
    *,
    init=None,
    visualize=None,
    batch_terms: str = UNCHECKED,
) -> Method:
    """The :class:`Method` of a pretext task: its ``loss``, the online backbone
    ``parts["backbone"]`` exported with ``input_spec``, nothing updated after the optimizer
    step; ``init`` defaults to the parts' params and batch statistics; ``batch_terms``:
    :attr:`Method.batch_terms`."""
    return Method(
        name=name,
        init=init or make_init(parts),
        loss=loss,
        update_state=no_state_update,
        export=online_export,
        backbone=parts["backbone"],
        input_spec=input_spec,
        visualize=visualize,
        batch_terms=batch_terms,
    )


def vit_patch_size(backbone, method: str) -> int:
    """The patch size of a ViT ``backbone`` (a ModuleDef); a clear error for other backbones."""
    module = nnx.eval_shape(lambda: backbone.build(rngs=nnx.Rngs(0)))
    if not hasattr(module, "patch_size"):
        raise ValueError(
            f"{method} needs a ViT backbone (model.backbone=vit_tiny/vit_small/vit_base), got "
            f"{type(module).__name__}."
        )
    return int(module.patch_size)


def output_shape(backbone, input_spec: dict, layer: str) -> tuple[int, ...]:
    """The shape ``(1, ...)`` of ``backbone``'s ``layer`` output (``return_all=True``) for one
    image of the export's input, found abstractly (nothing is computed)."""
    params, stats = jax.eval_shape(backbone.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((1, input_spec["size"], input_spec["size"], input_spec["channels"]),
                             jnp.float32)  # fmt: skip

    def run(params, stats, x):
        return backbone.apply(params, stats, x, train=False, return_all=True)[0]

    outputs = jax.eval_shape(run, params, stats, x)
    if layer not in outputs:
        raise ValueError(f"The backbone has no output {layer!r}; it has {sorted(outputs)}.")
    return tuple(outputs[layer].shape)


def decoder_upsamples(from_size: int, to_size: int) -> int:
    """How many 2x upsamplings take a ``from_size`` map to ``to_size`` (a power-of-2 ratio)."""
    ratio = to_size // max(from_size, 1)
    if from_size * ratio != to_size or ratio & (ratio - 1):
        raise ValueError(
            f"A {from_size}-pixel feature map cannot be upsampled by powers of 2 to {to_size} "
            "pixels; choose an input size that is a power-of-2 multiple of it."
        )
    return ratio.bit_length() - 1


def feature_decoder(
    backbone, input_spec: dict, layer: str, out_channels: int, out_size: int, *, width: int
) -> ModuleDef:
    """A :class:`~ssl_jax.models.ConvDecoder` (width ``width``) from the backbone's ``layer``
    map to ``out_size`` pixels of ``out_channels``, for images of ``input_spec``."""
    feature = output_shape(backbone, input_spec, layer)
    upsamples = decoder_upsamples(feature[1], out_size)
    return module_def(
        lambda rngs: ConvDecoder(
            feature[-1], out_channels, width=width, num_upsamples=upsamples, rngs=rngs
        )
    )
