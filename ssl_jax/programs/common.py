"""What the downstream programs share: the encoder export of a pretraining run and its features.

The encoder comes only through :func:`ssl_jax.encoder.load_export` (its spec says the
architecture and the input it expects); nothing here reads the pretraining augment recipe.
"""

import logging

import jax
import ml_collections

from ssl_jax.checkpoint import read_config
from ssl_jax.data import get_source
from ssl_jax.data.subset import SubsetSource, class_balanced_subset, save_indices, source_labels
from ssl_jax.encoder import Export, load_export, make_pixel_encode_fn, read_spec
from ssl_jax.evaluators import extract_features, make_sharded_encode

log = logging.getLogger(__name__)


def load_encoder(config: ml_collections.ConfigDict, mesh) -> tuple[Export, dict]:
    """``(export, info)`` for ``config.pretrained`` (checkpoint ``config.step``, else newest).

    With ``config.random_init`` the arrays are a fresh initialisation (seed
    ``config.seed``) of the same architecture: the baseline an SSL encoder must beat.
    """
    if not config.pretrained:
        raise ValueError(
            "config.pretrained is empty: pass the workdir of a pretraining run, e.g. "
            "--config.pretrained=/tmp/simclr_run."
        )
    if config.random_init:
        export = load_export(
            config.pretrained, config.step, mesh=mesh, random_init_seed=config.seed
        )
        info = {"encoder": "random_init", "seed": config.seed}
    else:
        export = load_export(config.pretrained, config.step, mesh=mesh)
        info = {"encoder": "pretrained", "step": export.step}
    info["pretrained"] = config.pretrained
    return export, info


def data_config(config: ml_collections.ConfigDict, step: int) -> ml_collections.ConfigDict:
    """The probe's ``data`` section, or the pretraining run's (checkpoint ``step``) when
    ``data.name`` is empty."""
    if config.data.name:
        return config.data
    data = ml_collections.ConfigDict(read_config(config.pretrained, step)["data"])
    data.batch_size = config.data.batch_size
    return data


def load_frozen(config: ml_collections.ConfigDict, mesh) -> tuple:
    """``(encode, arrays, spec, info)``: the frozen feature function a program evaluates.

    ``encode(arrays, images_uint8) -> (N, D)`` is the export's (:func:`load_encoder`, random
    with ``config.random_init``), or with ``config.raw_pixels`` the raw-pixel baseline: the
    encoder's preprocessed input flattened (``arrays`` is ``{}``), at the input spec of
    ``config.pretrained``'s export. ``spec`` is the export's spec. ``config.layer`` names an
    intermediate output of the backbone to read instead of its pooled features.
    """
    layer = config.get("layer")
    if not config.get("raw_pixels", False):
        export, info = load_encoder(config, mesh)
        if layer is not None:
            info["layer"] = layer
        return export.encode_fn(layer), export.arrays, export.spec, info
    if layer is not None:
        raise ValueError("config.raw_pixels has no layers: unset config.layer.")
    if config.random_init:
        raise ValueError(
            "config.raw_pixels and config.random_init are two different baselines; set one."
        )
    if not config.pretrained:
        raise ValueError(
            "config.raw_pixels needs config.pretrained, the run whose encoder input (size, "
            "colour space, mean, std) the pixels are taken at, e.g. --config.pretrained=RUN."
        )
    spec = read_spec(config.pretrained, config.step)
    info = {"encoder": "raw_pixels", "input_size": spec["input"]["size"]}
    info["pretrained"] = config.pretrained
    return make_pixel_encode_fn(spec["input"]), {}, spec, info


def labelled_subset(config: ml_collections.ConfigDict, source, workdir: str) -> tuple:
    """``(source, info)``: a class-balanced ``config.data.label_fraction`` of ``source`` (seed
    ``config.seed``), its indices saved as ``WORKDIR/label_subset.json``; all of it at 1."""
    fraction = float(config.data.get("label_fraction", 1.0))
    if fraction == 1.0:
        return source, {"label_fraction": 1.0}
    indices = class_balanced_subset(source_labels(source), fraction, seed=config.seed)
    info = {"label_fraction": fraction, "seed": config.seed}
    if jax.process_index() == 0:
        info["label_subset"] = save_indices(workdir, "label_subset", indices, split="train", **info)
    return SubsetSource(source, indices), info


def split_features(
    config: ml_collections.ConfigDict, mesh, splits, *, check=None
) -> tuple[dict, dict]:
    """``({split: (x, y)}, info)``: frozen features of each of ``splits`` (``"train"``,
    ``"test"``) by the encoder :func:`load_frozen` gives, on ``config.data`` (else the
    pretraining run's data); ``info`` holds ``num_<split>``, ``feature_dim``,
    ``num_classes`` and ``data`` besides the encoder's fields. ``check({split: labels})``,
    if given, runs before any image is encoded (to fail fast on data the program cannot use).
    """
    encode, arrays, spec, info = load_frozen(config, mesh)
    data = data_config(config, spec["step"])
    sources = {split: get_source(data, split) for split in splits}
    if check is not None:
        check({split: source_labels(source) for split, source in sources.items()})
    encode = make_sharded_encode(encode, mesh)
    kw = dict(batch_size=data.batch_size, mesh=mesh, progress=config.log.progress)
    out = {}
    for split, source in sources.items():
        out[split] = extract_features(encode, arrays, source, desc=f"{split} features", **kw)
        info[f"num_{split}"] = len(out[split][0])
    info.update(
        feature_dim=int(out[splits[0]][0].shape[1]),
        num_classes=max(source.num_classes for source in sources.values()),
        data=data.name,
    )
    return out, info
