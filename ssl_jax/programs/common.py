"""What the downstream programs share: the encoder export of a pretraining run and its features.

The encoder comes only through :func:`ssl_jax.export.load_export` (its spec says the
architecture, the input it expects and the dataset it was trained on); nothing here reads
the pretraining run's config or augment recipe.
"""

import logging
from collections.abc import Mapping

import ml_collections

from ssl_jax import config as config_lib
from ssl_jax.data import get_source
from ssl_jax.data.identity import FIELDS, TFDS_FIELDS, dataset_label, identify
from ssl_jax.data.subset import source_labels
from ssl_jax.evaluators import extract_features, make_sharded_encode
from ssl_jax.evaluators.features import extract_bank
from ssl_jax.export import Export, load_export, make_pixel_encode_fn, read_spec

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


def data_config(
    config: ml_collections.ConfigDict, spec: Mapping
) -> tuple[ml_collections.ConfigDict, str]:
    """``(data, origin)``: the data section a program reads, and where it comes from.

    With ``config.data.name`` set, ``config.data`` itself. Empty, the dataset of the export
    (``spec["data"]``, the identifying fields of the run it was trained in), with those
    identifying fields that ``config.data`` sets to other than their defaults on top (e.g.
    ``--config.data.tfds_data_dir`` where the same data lives on this host); the program's own
    fields (batch size, label fraction, ...) stay ``config.data``'s. Raises ``ValueError``
    for an export that does not record its dataset (written before specs did).
    """
    data = config.data
    if data.name:
        return data, "config.data"
    recorded = spec.get("data")
    if not recorded:
        raise ValueError(
            f"The encoder export of {config.pretrained} does not record the dataset it was "
            "trained on (exports written before specs held it): name the data, e.g. "
            "--config.data.name=digits or --config.data.name=npz --config.data.path=DIR."
        )
    defaults = config_lib.data_defaults().to_dict()
    changed = [k for k in FIELDS if k != "name" and data.get(k) != defaults[k]]
    misplaced = [k for k in changed if k in TFDS_FIELDS and recorded["name"] != "tfds"]
    if misplaced:
        raise ValueError(
            f"config.data.{misplaced[0]}={data[misplaced[0]]!r} applies to tfds datasets, but "
            f"the export's dataset is {dataset_label(recorded)}: set --config.data.name=tfds "
            f"too, or unset config.data.{misplaced[0]}."
        )
    fields = {**data.to_dict(), **{k: defaults[k] for k in FIELDS}, **recorded}
    fields.update({k: data[k] for k in changed})
    origin = "the export's dataset"
    if changed:
        origin += f", with {', '.join(changed)} from config.data"
    return ml_collections.ConfigDict(fields), origin


def log_data(data: ml_collections.ConfigDict, origin: str, sources: Mapping) -> None:
    """One line: which dataset a program uses, from where, its images per split and classes."""
    counts = " and ".join(f"{len(source)} {split}" for split, source in sources.items())
    log.info(
        "data: %s (%s): %s images, %d classes",
        dataset_label(identify(data)),
        origin,
        counts,
        max(source.num_classes for source in sources.values()),
    )


def load_feature_fn(config: ml_collections.ConfigDict, mesh) -> tuple:
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


def split_features(
    config: ml_collections.ConfigDict, mesh, splits, *, check=None, banks: bool = False
) -> tuple[dict, dict]:
    """``({split: (x, y)}, info)``: frozen features of each of ``splits`` (``"train"``,
    ``"test"``) by the encoder :func:`load_feature_fn` gives, on the data :func:`data_config`
    says (the export's dataset unless ``config.data`` names one); ``info`` holds
    ``num_<split>``, ``feature_dim``, ``num_classes``, ``data`` (its name) and ``dataset``
    (its identifying fields) besides the encoder's fields. ``check({split: labels})``, if
    given, runs before any image is encoded (to fail fast on data the program cannot use).
    ``banks=True``: each split's :class:`~ssl_jax.evaluators.features.FeatureBank` instead,
    the features left split over the devices (the kNN program's ImageNet-size memory bank).
    """
    encode, arrays, spec, info = load_feature_fn(config, mesh)
    data, origin = data_config(config, spec)
    sources = {split: get_source(data, split) for split in splits}
    log_data(data, origin, sources)
    if check is not None:
        check({split: source_labels(source) for split, source in sources.items()})
    encode = make_sharded_encode(encode, mesh)
    kw = dict(batch_size=data.batch_size, mesh=mesh, progress=config.log.progress)
    extract = extract_bank if banks else extract_features
    out = {}
    for split, source in sources.items():
        out[split] = extract(encode, arrays, source, desc=f"{split} features", **kw)
        info[f"num_{split}"] = out[split].count if banks else len(out[split][0])
    info.update(
        feature_dim=int(out[splits[0]][0].shape[-1]),
        num_classes=max(source.num_classes for source in sources.values()),
        data=data.name,
        dataset=identify(data),
    )
    return out, info
