"""What the downstream programs share: the encoder export of a pretraining run and its features.

The encoder comes only through :func:`ssl_jax.encoder.load_export` (its spec says the
architecture and the input it expects); nothing here reads the pretraining augment recipe.
"""

import logging

import ml_collections

from ssl_jax.checkpoint import read_config
from ssl_jax.data import get_source
from ssl_jax.encoder import Export, load_export
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


def features(config, mesh):
    """Frozen features of both splits: ``(train_x, train_y, test_x, test_y, info)``."""
    export, info = load_encoder(config, mesh)
    data = data_config(config, export.step)
    encode = make_sharded_encode(export.encode_fn(), mesh)
    kw = dict(batch_size=data.batch_size, mesh=mesh, progress=config.log.progress)
    train_src, test_src = get_source(data, "train"), get_source(data, "test")
    train_x, train_y = extract_features(
        encode, export.arrays, train_src, desc="train features", **kw
    )
    test_x, test_y = extract_features(encode, export.arrays, test_src, desc="test features", **kw)
    info.update(
        num_train=len(train_x),
        num_test=len(test_x),
        feature_dim=int(train_x.shape[1]),
        num_classes=max(train_src.num_classes, test_src.num_classes),
        data=data.name,
    )
    return train_x, train_y, test_x, test_y, info
