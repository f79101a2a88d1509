"""PyTorch checkpoints -> ssl_jax exports (:func:`import_weights`) and back
(:func:`export_weights`).

Import: read the file (:func:`~ssl_jax.weights.io.read_state_dict`), take the encoder out of
the release's layout (:class:`~ssl_jax.weights.layouts.Arch`), map every tensor by the
architecture's rules (names, transposes, ``OIHW`` -> ``HWIO``), refuse tensors that no rule
maps and rules that find no tensor (naming them), check every shape against the rebuilt
ssl_jax backbone, and write an export (:func:`ssl_jax.checkpoint.save_export`) whose spec
carries the source's input normalisation. Every downstream program reads it as
``--config.pretrained=DIR``; pretraining continues from it with ``--config.ckpt.init_from=DIR``.

ssl_jax's layouts equal PyTorch's where results depend on them: ResNet paddings are explicit
and symmetric (``k // 2``, as ``nn.Conv2d(padding=k // 2)``; the max-pool pads with -inf as
``nn.MaxPool2d(3, 2, 1)``), BatchNorm epsilon is 1e-5 and momentum 0.9 (PyTorch's 0.1), the
ViT's LayerNorm epsilon 1e-6 and its GELU exact, as timm's.

Position embeddings are resampled to another image size (``img_size``) as timm's
``resample_abs_pos_embed``: bicubic with antialiasing (PyTorch's antialiased bicubic is
Keys' kernel with ``a = -0.5`` and renormalised edge weights, the kernel of
``jax.image.resize(..., antialias=True)``), the [CLS] embedding kept.
"""

import json
import logging
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from ssl_jax.checkpoint import save_export
from ssl_jax.export import PROTOTYPES, load_export, make_head, make_head_spec, make_spec
from ssl_jax.models import make_backbone
from ssl_jax.weights.io import read_safetensors_metadata, read_state_dict, write_safetensors
from ssl_jax.weights.layouts import VIT_SHAPES, Arch, get_arch, resnet_rules, vit_rules

log = logging.getLogger(__name__)

FORMATS = ("timm", "safetensors")
OWN_ARCH = "ssl_jax"  # --arch of a file export_weights(format="safetensors") wrote


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _flat_paths(tree) -> tuple[list[str], list, object]:
    """``(paths, leaves, treedef)`` with paths ``params/blocks/0/attn/qkv/kernel`` (an
    ``nnx.Variable``'s trailing ``value`` dropped)."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = []
    for path, _ in flat:
        names = [_key_name(k) for k in path]
        if len(names) > 1 and names[-1] == "value":
            names = names[:-1]
        paths.append("/".join(names))
    return paths, [leaf for _, leaf in flat], treedef


def _abstract_export(model: Mapping, head_spec: Mapping | None):
    backbone = make_backbone(ml_collections.ConfigDict(dict(model)))
    head = None if head_spec is None else make_head(head_spec, backbone.feature_dim)

    def init(key):
        arrays = dict(zip(("params", "batch_stats"), backbone.init(key), strict=True))
        if head is not None:
            arrays["head"] = dict(zip(("params", "batch_stats"), head.init(key), strict=True))
        return arrays

    return backbone, jax.eval_shape(init, jax.random.key(0))


def _build_tree(flat: Mapping[str, np.ndarray], model: Mapping, head_spec, source: str):
    """The export tree of ``model`` filled from ``flat`` ``{path: array}``; ``ValueError``
    naming a path the model has and ``flat`` lacks, a shape that differs, or an extra path."""
    backbone, abstract = _abstract_export(model, head_spec)
    paths, leaves, treedef = _flat_paths(abstract)
    missing = [p for p in paths if p not in flat]
    extra = sorted(set(flat) - set(paths))
    if missing or extra:
        raise ValueError(
            f"{source} does not fit {model['backbone']}: model arrays not in the file "
            f"{missing[:8]}, file arrays not in the model {extra[:8]}."
        )
    out = []
    for path, leaf in zip(paths, leaves, strict=True):
        array = np.asarray(flat[path], dtype=np.float32)
        if array.shape != tuple(leaf.shape):
            raise ValueError(
                f"{source}: {path} has shape {array.shape}, the model's is {tuple(leaf.shape)}."
            )
        out.append(jnp.asarray(array))
    return backbone, jax.tree_util.tree_unflatten(treedef, out)


def _select(state_dict: Mapping[str, np.ndarray], arch: Arch) -> tuple[dict, list[str]]:
    """The encoder's tensors (names relative to it) and the names of the release's other
    entries, which are left out; ``ValueError`` when the file holds neither."""
    for prefix in arch.prefixes:
        if prefix and not any(k.startswith(prefix) for k in state_dict):
            continue
        encoder, others = {}, []
        for name, value in state_dict.items():
            if any(name.startswith(o) for o in arch.other):
                others.append(name)
            elif prefix and name.startswith(prefix):
                encoder[name[len(prefix) :]] = value
            elif not prefix:
                encoder[name] = value
            else:
                raise ValueError(
                    f"{arch.name}: {name} is neither under the encoder's prefix {prefix!r} nor "
                    f"one of the release's known other entries {list(arch.other)}."
                )
        return encoder, others
    raise ValueError(f"{arch.name}: the file holds no encoder under {list(arch.prefixes)}.")


def _vit_rules(model: Mapping, head: bool) -> dict[str, tuple[str, str]]:
    depth = model.get("depth", VIT_SHAPES[model["backbone"].removeprefix("vit_")][1])
    return vit_rules(
        depth,
        head=head,
        layer_scale=model.get("layer_scale") is not None,
        registers=bool(model.get("num_registers", 0)),
    )


def _resample_pos_embed(pos: np.ndarray, grid: int) -> np.ndarray:
    """``(1, 1 + g * g, D)`` -> ``(1, 1 + grid * grid, D)`` as timm's
    ``resample_abs_pos_embed`` (antialiased bicubic, [CLS] kept)."""
    side = round((pos.shape[1] - 1) ** 0.5)
    if side == grid:
        return pos
    patches = jnp.asarray(pos[:, 1:].reshape(1, side, side, -1), jnp.float32)
    resized = jax.image.resize(patches, (1, grid, grid, pos.shape[-1]), "bicubic", antialias=True)
    return np.concatenate([pos[:, :1], np.asarray(resized).reshape(1, grid * grid, -1)], 1)


def _vit_model(arch: Arch, encoder: Mapping[str, np.ndarray], img_size: int | None) -> dict:
    model = dict(arch.model)
    size = model["backbone"].removeprefix("vit_")
    embed_dim, depth, _ = VIT_SHAPES[size]
    if "cls_token" not in encoder or "patch_embed.proj.weight" not in encoder:
        raise ValueError(f"{arch.name}: the encoder has no cls_token / patch_embed.proj.weight.")
    width = encoder["cls_token"].shape[-1]
    patch = encoder["patch_embed.proj.weight"].shape[-1]
    if width != embed_dim or patch != model["patch_size"]:
        raise ValueError(
            f"{arch.name} is a width-{embed_dim} ViT with {model['patch_size']}-pixel patches; "
            f"the checkpoint's has width {width} and {patch}-pixel patches."
        )
    blocks = 1 + max(int(k.split(".")[1]) for k in encoder if k.startswith("blocks."))
    if blocks != depth:
        model["depth"] = blocks
    prefix = 0 if model.get("num_registers") else 1  # timm's no_embed_class
    grid = round((encoder["pos_embed"].shape[1] - prefix) ** 0.5)
    model["img_size"] = grid * patch if img_size is None else img_size
    if model["img_size"] % patch:
        raise ValueError(f"img_size={model['img_size']} is not a multiple of the patch {patch}.")
    return model


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray], arch: Arch, *, img_size: int | None = None
) -> tuple[dict, dict | None, dict, list[str]]:
    """``(model, head_spec, {export path: array}, left_out)`` of a flat state_dict.

    ``left_out``: the names of the release's other entries (projectors, predictors, the
    other network), not imported. ``ValueError`` names tensors no rule maps and rules no
    tensor fills.
    """
    encoder, left_out = _select(state_dict, arch)
    head_keys = [k for k in encoder if k.startswith(arch.head_prefix)]
    if arch.head_is_projector:
        left_out += [arch.head_prefix + k[len(arch.head_prefix) :] for k in head_keys]
        encoder = {k: v for k, v in encoder.items() if k not in head_keys}
        head_keys = []
    head = bool(head_keys)
    if arch.family == "vit":
        model = _vit_model(arch, encoder, img_size)
        rules = _vit_rules(model, head)
    else:
        model = dict(arch.model)
        rules = resnet_rules(model["backbone"], head=head)
    unmapped = sorted(set(encoder) - set(rules))
    absent = [k for k, (_, kind) in rules.items() if k not in encoder and kind != "count"]
    if unmapped or absent:
        raise ValueError(
            f"{arch.name}: tensors no rule maps: {unmapped[:10]}"
            f"{' ...' if len(unmapped) > 10 else ''}; tensors the architecture needs but the "
            f"file lacks: {absent[:10]}{' ...' if len(absent) > 10 else ''}."
        )
    flat = {}
    for name, (path, kind) in rules.items():
        if kind == "count":
            continue
        value = np.asarray(encoder[name], np.float32)
        if kind == "linear":
            value = value.T
        elif kind == "conv":
            value = value.transpose(2, 3, 1, 0)
        elif kind in ("pos", "pos_noclass"):
            if kind == "pos_noclass":  # timm's no_embed_class: ours has a zero [CLS] entry
                value = np.concatenate([np.zeros_like(value[:, :1]), value], axis=1)
            value = _resample_pos_embed(value, model["img_size"] // model["patch_size"])
        flat[path] = value
    head_spec = (
        make_head_spec("linear", int(encoder[arch.head_prefix + "bias"].shape[0])) if head else None
    )
    return model, head_spec, flat, left_out


def _metadata(path: epath.PathLike) -> dict | None:
    if epath.Path(path).suffix != ".safetensors":
        return None
    return read_safetensors_metadata(path)


def import_weights(
    arch: str,
    checkpoint: epath.PathLike,
    workdir: epath.PathLike,
    *,
    img_size: int | None = None,
    mean=None,
    std=None,
) -> dict:
    """Writes ``checkpoint`` (a PyTorch state_dict or safetensors file of ``arch``) as an
    ssl_jax export into ``workdir`` (step 0); returns its spec.

    ``arch``: ``SOURCE:MODEL`` (:func:`~ssl_jax.weights.layouts.get_arch`), or ``ssl_jax``
    for a file :func:`export_weights` wrote with ``format="safetensors"`` (its spec is in
    the file). ``img_size``: a ViT's input size other than the source's (position
    embeddings resampled); for a ResNet only the export's input size (224 by default).
    ``mean``/``std``: override the source's input normalisation (else the architecture's,
    or, in a file :func:`export_weights` wrote, the exported encoder's).
    """
    state_dict = read_state_dict(checkpoint)
    source = f"{checkpoint}"
    if arch == OWN_ARCH:
        meta = read_safetensors_metadata(checkpoint)
        if meta is None:
            raise ValueError(f"{source} has no ssl_jax metadata; pass its SOURCE:MODEL --arch.")
        spec = meta["spec"]
        _, tree = _build_tree(state_dict, spec["model"], spec["head"] or None, source)
    else:
        spec_arch = get_arch(arch)
        model, head_spec, flat, left_out = convert_state_dict(
            state_dict, spec_arch, img_size=img_size
        )
        if left_out:
            log.warning("%s: not imported (not the encoder): %s", arch, ", ".join(left_out))
        backbone, tree = _build_tree(flat, model, head_spec, source)
        meta = _metadata(checkpoint)
        if meta is not None and mean is None and std is None:
            # A file export_weights wrote: the input its encoder was trained with.
            mean, std = meta["spec"]["input"]["mean"], meta["spec"]["input"]["std"]
        spec = make_spec(
            model,
            input={
                "size": model.get("img_size", img_size or 224),
                "mean": spec_arch.mean if mean is None else mean,
                "std": spec_arch.std if std is None else std,
            },
            network=spec_arch.network,
            method=spec_arch.method,
            feature_dim=backbone.feature_dim,
            step=0,
            head=head_spec or False,
        )
    save_export(workdir, spec["step"], encoder=tree, encoder_spec=spec)
    (epath.Path(workdir) / "imported.json").write_text(
        json.dumps({"arch": arch, "checkpoint": str(checkpoint), "img_size": img_size}, indent=1)
    )
    return spec


def _timm_rules(spec: Mapping) -> dict[str, tuple[str, str]]:
    model, head = spec["model"], bool(spec["head"])
    if model["backbone"].startswith("vit"):
        unsupported = {k: model[k] for k in ("pool",) if model.get(k, "cls") != "cls"}
        if unsupported:
            raise ValueError(f"format='timm' writes class-token ViTs; this one has {unsupported}.")
        return _vit_rules(model, head)
    if model.get("stem") != "imagenet" or model.get("width") != 64:
        raise ValueError(
            "format='timm' writes torchvision/timm ResNets (width 64, imagenet stem); this one "
            f"has width {model.get('width')} and stem {model.get('stem')!r}."
        )
    return resnet_rules(model["backbone"], head=head)


def export_tensors(run_dir: epath.PathLike, *, format: str, step: int | None = None):
    """``(tensors, spec)`` of a run's export in ``format``: ``"timm"`` (timm / torchvision
    names and layouts) or ``"safetensors"`` (ssl_jax's own paths and layouts)."""
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is unknown; valid: {list(FORMATS)}.")
    export = load_export(run_dir, step)
    arrays, spec = export.arrays, export.spec
    if spec["head"] and spec["head"]["kind"] == PROTOTYPES:
        # A DINO-family prototype head is for distillation (dino_kd), not a PyTorch model's.
        arrays = {k: v for k, v in arrays.items() if k != "head"}
        spec = {**spec, "head": False}
        log.info("%s: the prototype head is not written (the encoder only).", run_dir)
    paths, leaves, _ = _flat_paths(arrays)
    flat = {p: np.asarray(leaf) for p, leaf in zip(paths, leaves, strict=True)}
    if format == "safetensors":
        return flat, spec
    tensors = {}
    for name, (path, kind) in _timm_rules(spec).items():
        if kind == "count":
            tensors[name] = np.zeros((), np.int64)
            continue
        value = flat.pop(path)
        if kind == "pos_noclass":  # timm adds no position to [CLS]: fold ours into it
            tensors["cls_token"] = tensors["cls_token"] + value[:, :1]  # (written first)
            value = value[:, 1:]
        tensors[name] = (
            value.T
            if kind == "linear"
            else (value.transpose(3, 2, 0, 1) if kind == "conv" else value)
        )
    assert not flat, f"export arrays without a timm name: {sorted(flat)}"
    return tensors, spec


def export_weights(
    run_dir: epath.PathLike, out: epath.PathLike, *, format: str, step: int | None = None
) -> dict:
    """Writes a run's export as one ``.safetensors`` file ``out`` (``format`` as
    :func:`export_tensors`; the spec in its metadata) and returns the spec. A ``"timm"`` file
    loads with ``timm.create_model(NAME, pretrained=True,
    pretrained_cfg_overlay=dict(file=out))`` (``num_classes=0`` for an export without a
    head) or ``torchvision.models.resnet50().load_state_dict(safetensors.torch.load_file(out))``.
    """
    tensors, spec = export_tensors(run_dir, format=format, step=step)
    write_safetensors(out, tensors, metadata={"spec": spec, "format": format})
    return spec


__all__ = ["FORMATS", "convert_state_dict", "export_tensors", "export_weights", "import_weights"]
